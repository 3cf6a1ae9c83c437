"""The task runs of one large `.map()`, kept compact: their arguments as columns, their ids numbered from one
batch id, their run numbers from one first key, and the options they share once. A record, a call or a future
of one of them is made only when something asks for it (`run(i)`, `call(i)`); a runner that keeps its outcomes
compact too (the cluster runners, `runners/remote/fanout.py`) says what a run made late went through (`_outcome`).

A `.map()` takes this form only where nothing watches each task run as it is created and changes state: no
run-event sink that wants them (the run store, the API client; `transitions.task_runs_watched`), no future or
linked value among the arguments, no `wait_for` and no `task_run_name`. Everything else goes the way of
`make_calls`, one record and one call per run.
"""
from __future__ import annotations

import threading
from typing import Any

from .. import states as S
from ..context import current_tags as _current_tags
from ..context import flow_run_ctx
from ..runs import TaskRun, batch_base
from ..states import State
from . import transitions
from .caching import resolve_result_options
from .calls import TaskCall
from .resolve import _ATOMIC, collect_futures, find_upstreams
from .spec import HasTaskSpec, TaskSpec


class Fanout:
    """The `n` task runs of one `.map()` (see the module docstring). Run `i` has id `base + i`, run number
    `key0 + i` and the parameters `static` plus the i-th element of each column of `mapped`."""

    __slots__ = ("spec", "n", "base", "key0", "flow_run_id", "tags", "static", "mapped", "pending", "result_options",
                 "flow_parameters", "log_prints", "settings_env", "context", "_runs", "lock", "__weakref__")

    def __init__(self, spec: TaskSpec, static: dict[str, Any], mapped: dict[str, list[Any]], n: int) -> None:
        import contextvars

        ctx = flow_run_ctx.get()
        assert ctx is not None  # (`allowed` checked it)
        self.spec = spec
        self.n = n
        self.key0 = ctx.next_dynamic_keys(spec.task_key, n).start
        self.base = batch_base()
        self.flow_run_id = ctx.flow_run_id
        self.tags = spec.tags | _current_tags.get()
        self.static = static
        self.mapped = mapped
        self.pending = S.Pending()
        self.result_options = resolve_result_options(spec, ctx)
        self.flow_parameters = ctx.parameters
        self.log_prints = ctx.log_prints if spec.log_prints is None else spec.log_prints
        self.settings_env = ctx.settings_env
        self.context = contextvars.copy_context()
        self._runs: dict[int, TaskRun] = {}  # the records made so far
        self.lock = threading.RLock()
        if ctx.flow_run is not None:
            ctx.flow_run.task_runs_later(self)

    def params(self, i: int) -> dict[str, Any]:
        p = dict(self.static)
        for name, col in self.mapped.items():
            p[name] = col[i]
        return p

    def run(self, i: int) -> TaskRun:
        """Run `i`'s record (made on the first call, then the same object)."""
        with self.lock:
            run = self._runs.get(i)
            if run is None:
                spec = self.spec
                run = TaskRun(self.base + i, None, spec.name, spec.task_key, self.flow_run_id, self.params(i),
                              self.tags, self.pending, self.key0 + i)
                done = self._outcome(i)
                if done is not None:  # a record made after its run ended: it starts with the whole history
                    states, run.start_ts, run.end_ts, run.run_count, run.worker = done
                    run.state_history = [self.pending, *states]
                    run.state = states[-1]
                self._runs[i] = run
            return run

    def made(self, lo: int, hi: int) -> list[tuple[int, TaskRun]]:
        """The records made so far of runs `lo` to `hi` (call with `lock` held)."""
        runs = self._runs
        if not runs:
            return []
        return [(i, r) for i in range(lo, hi) if (r := runs.get(i)) is not None]

    def call(self, i: int) -> TaskCall:
        run = self.run(i)
        return TaskCall(self.spec, run, run.parameters, None, self.result_options, self.flow_parameters,
                        self.log_prints, self.settings_env, self.context)

    def unsettled(self) -> tuple[list[tuple[int, int]], list[TaskRun]]:
        """The runs that have not ended, for a sink writing what is still Pending: (lo, hi) spans of runs without
        a record, and the records (made for runs that went the usual way) still in their first state."""
        return [(0, self.n)], []

    def all_runs(self) -> list[TaskRun]:
        return [self.run(i) for i in range(self.n)]

    def _outcome(self, i: int) -> tuple[tuple[State, ...], float, float, int, str | None] | None:
        """What run `i` went through if it has ended and no record of it was made (a runner's subclass tells):
        (its states after Pending, start, end, run count, worker); None while it has not."""
        return None

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec.name!r}, {self.n} runs)"


def allowed(task: HasTaskSpec, static: dict[str, Any], mapped: dict[str, list[Any]], n: int, wait_for: Any) -> bool:
    """Whether a `.map()` with these columns may take the compact form (see the module docstring)."""
    ctx = flow_run_ctx.get()
    if n < 2 or ctx is None or wait_for or task.spec.task_run_name is not None:
        return False
    transitions.ensure_recorder_sink()
    if transitions.task_runs_watched() or find_upstreams(static):
        return False
    results = ctx.result_runs
    for col in mapped.values():
        if set(map(type, col)) <= _ATOMIC:  # the usual case, checked at C speed
            if results and any(id(v) in results for v in col):
                return False
            continue
        if results:
            return False
        for v in col:
            if type(v) not in _ATOMIC and collect_futures(v, []):
                return False
    return True


__all__ = ["Fanout", "allowed"]
