"""The task-runner interface. A runner implements `start`, `shutdown` and `submit_call`; `submit`, `map`,
`unmapped`, `wait_for` and the building of task runs are written once here.

Like `concurrent.futures.Executor`, whose subclasses only implement `submit`.
"""
from __future__ import annotations

import atexit
import contextvars
import itertools
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from ..caching import resolve_result_options
from ..context import current_tags as _current_tags, flow_run_ctx
from ..engine import TaskCall, new_task_run
from ..errors import MappingLengthMismatch, MappingMissingIterable
from ..futures import FutureList, TaskRunFuture
from ..resolve import unmapped

if TYPE_CHECKING:
    from ..tasks import Task


class TaskRunner(ABC):
    """Runs task runs somewhere (threads, processes, a cluster) and hands back futures."""

    name: ClassVar[str] = ""

    def __init__(self) -> None:
        self._started = False
        self._start_lock = threading.Lock()

    # -- what a runner implements -----------------------------------------------------------------------------
    @abstractmethod
    def start(self) -> None:
        """Acquire resources (threads, processes, a cluster connection)."""

    @abstractmethod
    def shutdown(self) -> None:
        """Wait for submitted work and release resources. Must not shut down a cluster the runner did not start."""

    @abstractmethod
    def submit_call(self, call: TaskCall) -> TaskRunFuture:
        """Schedule one task run; its arguments may hold futures of this runner, which it waits for first."""

    def submit_calls(self, calls: Sequence[TaskCall]) -> list[TaskRunFuture]:
        """Schedule many task runs (from `.map()`); runners override this to batch."""
        return [self.submit_call(c) for c in calls]

    def duplicate(self) -> "TaskRunner":
        """A new, unstarted runner with the same configuration (each flow run gets its own)."""
        return type(self)(**self._config())

    def _config(self) -> dict[str, Any]:
        return {}

    # -- written once -----------------------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._started

    def ensure_started(self) -> None:
        if not self._started:
            with self._start_lock:
                if not self._started:
                    self.start()
                    self._started = True

    def __enter__(self) -> "TaskRunner":
        self.ensure_started()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._started:
            try:
                self.shutdown()
            finally:
                self._started = False

    def submit(self, task: "Task", parameters: dict[str, Any], wait_for: Iterable[Any] | None = None,
               dependencies: Any = None) -> TaskRunFuture:
        self.ensure_started()
        return self.submit_call(make_call(task, parameters, wait_for))

    def map(self, task: "Task", parameters: dict[str, Any], wait_for: Iterable[Any] | None = None) -> FutureList:
        self.ensure_started()
        calls = make_calls(task, expand_map_parameters(task, parameters), wait_for)
        return FutureList(self.submit_calls(calls))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self._config().items())})"


# ---------------------------------------------------------------------------------------------------------------
_global_keys = itertools.count()


def make_call(task: "Task", parameters: dict[str, Any], wait_for: Any) -> TaskCall:
    return make_calls(task, [parameters], wait_for)[0]


def make_calls(task: "Task", param_list: Sequence[dict[str, Any]], wait_for: Any) -> list[TaskCall]:
    """Task-run records and calls for `task` with each parameters dict, in the current flow run (if any)."""
    ctx = flow_run_ctx.get()
    n = len(param_list)
    if ctx is not None:
        keys: Iterable[int] = ctx.next_dynamic_keys(task.task_key, n)
        flow_run_id = ctx.flow_run_id
        flow_params = ctx.parameters
        log_prints = ctx.log_prints if task.log_prints is None else task.log_prints
        settings_env = ctx.settings_env
    else:
        first = next(_global_keys)
        keys = range(first, first + n) if n == 1 else _take(n)
        flow_run_id, flow_params, settings_env = None, {}, None
        log_prints = bool(task.log_prints)
    opts = resolve_result_options(task, ctx)
    tags = task.tags | _current_tags.get()
    context = contextvars.copy_context()
    calls = [TaskCall(task, new_task_run(task, params, flow_run_id, key, tags), params, wait_for, opts,
                      flow_params, log_prints, settings_env, context)
             for params, key in zip(param_list, keys)]
    if ctx is not None and ctx.flow_run is not None:
        ctx.flow_run.task_runs.extend(c.task_run for c in calls)
    return calls


def _take(n: int) -> range:
    global _global_keys
    first = next(_global_keys)
    _global_keys = itertools.count(first + n)
    return range(first, first + n)


def _iterable(v: Any) -> bool:
    if isinstance(v, (str, bytes, bytearray, dict)):
        return False
    try:
        iter(v)
    except TypeError:
        return False
    return True


def expand_map_parameters(task: "Task", parameters: dict[str, Any]) -> list[dict[str, Any]]:
    """One parameters dict per mapped run. Iterable arguments are mapped over (they must have equal lengths);
    everything else, and anything wrapped in `unmapped(...)`, goes whole to every run. A single future is
    waited for and its result mapped over."""
    static: dict[str, Any] = {}
    mapped: dict[str, list[Any]] = {}
    for k, v in parameters.items():
        if isinstance(v, unmapped):
            static[k] = v.value
            continue
        if isinstance(v, TaskRunFuture):
            v = v.result()
        if _iterable(v):
            mapped[k] = v if isinstance(v, list) else list(v)
        else:
            static[k] = v
    if not mapped:
        got = ", ".join(f"{k}={type(v).__name__}" for k, v in parameters.items()) or "no arguments"
        raise MappingMissingIterable(f"Task {task.name!r}: .map() needs at least one iterable argument to map "
                                     f"over; got {got}. Strings and dicts are not mapped over.")
    lengths = {k: len(v) for k, v in mapped.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{k} has {n}" for k, n in lengths.items())
        raise MappingLengthMismatch(f"Task {task.name!r}: .map() got iterables of different lengths ({detail}). "
                                    f"Give them equal lengths, or wrap the ones to pass whole in unmapped(...).")
    n = next(iter(lengths.values()))
    names = list(mapped)
    if len(names) == 1:
        (name,) = names
        values = mapped[name]
        if static:
            return [{**static, name: values[i]} for i in range(n)]
        return [{name: v} for v in values]
    cols = [mapped[k] for k in names]
    return [{**static, **dict(zip(names, row))} for row in zip(*cols)]


# ---------------------------------------------------------------------------------------------------------------
def gate(deps: list[TaskRunFuture], release: Callable[[], Any]) -> None:
    """Call `release()` once every future in `deps` is done (at once if they all are)."""
    remaining = [len(deps)]
    lock = threading.Lock()

    def one_done(_: Any) -> None:
        with lock:
            remaining[0] -= 1
            last = remaining[0] == 0
        if last:
            release()

    for d in deps:
        d.add_done_callback(one_done)


_default_runner: Any = None
_default_lock = threading.Lock()


def current_runner() -> TaskRunner:
    """The runner of the current flow run, or (outside flows) a process-wide thread runner."""
    ctx = flow_run_ctx.get()
    if ctx is not None:
        return ctx.task_runner
    global _default_runner
    if _default_runner is None:
        with _default_lock:
            if _default_runner is None:
                from .thread import ThreadPoolTaskRunner

                runner = ThreadPoolTaskRunner()
                runner.ensure_started()
                atexit.register(runner.__exit__, None, None, None)
                _default_runner = runner
    return _default_runner
