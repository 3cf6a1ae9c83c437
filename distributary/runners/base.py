"""The task-runner interface. A runner implements `start`, `shutdown` and `submit_call`; `submit`, `map`,
`unmapped`, `wait_for` are written once here (task calls and map expansion: `engine/calls.py`).

Like `concurrent.futures.Executor`, whose subclasses only implement `submit`.
"""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

from ..engine.calls import TaskCall, make_call, make_calls, map_columns, rows
from ..engine.futures import FutureList, TaskRunFuture
from ..engine.gcpause import gc_paused
from ..engine.spec import HasTaskSpec


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
    def submit_call(self, call: TaskCall) -> TaskRunFuture[Any]:
        """Schedule one task run; its arguments may hold futures of this runner, which it waits for first."""

    def submit_calls(self, calls: Sequence[TaskCall]) -> Sequence[TaskRunFuture[Any]]:
        """Schedule many task runs (from `.map()`); runners override this to batch."""
        return [self.submit_call(c) for c in calls]

    def cancel_all(self, reason: str) -> None:  # noqa: B027 (optional hook: a runner without it just waits)
        """Stop the task runs not finished yet (the flow run timed out): those not started end Cancelled, running
        ones are stopped where the runner can and abandoned with a WARNING where it cannot, and the following
        `shutdown()` returns without waiting for them. `reason` ends up in each run's message."""

    def duplicate(self) -> TaskRunner:
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

    def __enter__(self) -> TaskRunner:
        self.ensure_started()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._started:
            try:
                self.shutdown()
            finally:
                self._started = False

    def submit(self, task: HasTaskSpec, parameters: dict[str, Any], wait_for: Iterable[Any] | None = None,
               dependencies: Any = None) -> TaskRunFuture[Any]:
        """Schedule one run of `task` with `parameters`, after the futures in `wait_for` (and those nested in the
        parameters) are done. `dependencies` is accepted for compatibility with Prefect's signature and ignored:
        the runs to wait for are found in `parameters` and `wait_for`."""
        self.ensure_started()
        return self.submit_call(make_call(task, parameters, wait_for))

    def map(self, task: HasTaskSpec, parameters: dict[str, Any], wait_for: Iterable[Any] | None = None) -> FutureList:
        self.ensure_started()
        static, mapped, n = map_columns(task, parameters)
        return self._map(task, static, mapped, n, wait_for)

    def _map(self, task: HasTaskSpec, static: dict[str, Any], mapped: dict[str, list[Any]], n: int,
             wait_for: Any) -> FutureList:
        """The runs of a `.map()` whose arguments `engine.calls.map_columns` split: one record and call each."""
        with gc_paused():  # the per-run records are no garbage: collecting while they are made finds nothing
            calls = make_calls(task, rows(static, mapped), wait_for)
        return FutureList(self.submit_calls(calls))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self._config().items())})"


# ---------------------------------------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------------------------------------
def gate(deps: list[TaskRunFuture[Any]], release: Callable[[], Any]) -> None:
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
