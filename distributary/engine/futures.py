"""Futures of task runs, whatever runner made them: `.result()`, `.wait()`, `.state`, `wait()`, `as_completed()`.

Mirrors `prefect.futures`. Each runner subclasses `TaskRunFuture`; the functions here work on any mix of them.
"""
from __future__ import annotations

import queue
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

from ..states import UNSET, State, StateType

if TYPE_CHECKING:
    from ..runs import TaskRun

R = TypeVar("R")


class TaskRunFuture(ABC, Generic[R]):
    """The eventual outcome of one task run."""

    __slots__ = ("task_run", "__weakref__")
    task_run: TaskRun

    @property
    def task_run_id(self) -> uuid.UUID:
        return self.task_run.id

    @property
    @abstractmethod
    def state(self) -> State:
        """The task run's current state (its final state once `done()`)."""

    @abstractmethod
    def done(self) -> bool:
        """True once the task run has reached its final state."""

    @abstractmethod
    def wait(self, timeout: float | None = None) -> None:
        """Block until the task run is done or `timeout` seconds have passed."""

    @abstractmethod
    def add_done_callback(self, fn: Callable[[TaskRunFuture[R]], Any]) -> None:
        """Call `fn(self)` once the task run is done (at once if it already is)."""

    @classmethod
    def fetch_many(cls, futures: list[TaskRunFuture[Any]], timeout: float | None = None) -> None:
        """Hook for runners whose values live elsewhere (a cluster): wait for `futures` (all of this class) and
        bring their values over in bulk, so that `result()` on each is then cheap. The default does nothing."""

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> R:
        """The task run's return value; raises its exception if it failed (unless `raise_on_failure=False`)."""
        self.wait(timeout)
        if not self.done():
            raise TimeoutError(f"Task run {self.task_run.name!r} did not finish within {timeout} seconds.")
        value: R = self.state.result(raise_on_failure=raise_on_failure)
        return value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.task_run.name!r}, state={self.state!r})"


# Prefect's name, for users who annotate with it.
PrefectFuture = TaskRunFuture

_settle_lock = threading.Lock()


class SettableFuture(TaskRunFuture[R]):
    """A future whose runner sets its final state once; waiting and done-callbacks are written here for every
    runner. Until it is done, `state` is the task run's live state; once done, `state` is the final state and
    `result()` is its `result()` (subclasses keep that: `FutureList.result` relies on it)."""

    __slots__ = ("_final", "_event", "_callbacks")

    def __init__(self, task_run: Any):
        self.task_run = task_run
        self._final: State | None = None
        self._event: threading.Event | None = None
        self._callbacks: list[Callable[..., Any]] | None = None

    @property
    def state(self) -> State:
        s = self._final
        return s if s is not None else self.task_run.state

    def done(self) -> bool:
        return self._final is not None

    def wait(self, timeout: float | None = None) -> None:
        if self._final is not None:
            return
        with _settle_lock:
            if self._final is not None:
                return
            if self._event is None:  # made only when someone waits before the run is done
                self._event = threading.Event()
            event = self._event
        event.wait(timeout)

    def add_done_callback(self, fn: Callable[[TaskRunFuture[Any]], Any]) -> None:
        with _settle_lock:
            if self._final is None:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(fn)
                return
        call_back(fn, self)

    def set_final(self, state: State) -> None:
        """Record the run's final state and wake waiters and callbacks (called by the runner, once)."""
        with _settle_lock:
            self._final = state
            event, callbacks = self._event, self._callbacks
            self._callbacks = None
        _wake(self, event, callbacks)

    @staticmethod
    def set_final_many(pairs: Iterable[tuple[SettableFuture[Any], State]]) -> None:
        """`set_final` for many futures at once (a cluster batch's): one lock for the lot, then the waiters and
        callbacks of those that have any. Only for futures whose class does not override `set_final`."""
        woken: list[tuple[SettableFuture[Any], threading.Event | None, list[Callable[..., Any]] | None]] = []
        with _settle_lock:
            for fut, state in pairs:
                fut._final = state
                if fut._event is not None or fut._callbacks is not None:
                    woken.append((fut, fut._event, fut._callbacks))
                    fut._callbacks = None
        for fut, event, callbacks in woken:
            _wake(fut, event, callbacks)


def _wake(fut: TaskRunFuture[Any], event: threading.Event | None, callbacks: list[Callable[..., Any]] | None) -> None:
    """Wake a settled future's waiters, then call its done-callbacks (outside the settle lock)."""
    if event is not None:
        event.set()
    if callbacks:
        for cb in callbacks:
            call_back(cb, fut)


def call_back(fn: Callable[..., Any], fut: TaskRunFuture[Any]) -> None:
    """Call a done-callback; one that raises is logged and does not stop the others."""
    try:
        fn(fut)
    except Exception:
        from ..logging import engine_logger

        engine_logger("runners").exception("A done-callback of %r raised", fut)


class FutureList(list[Any]):
    """The futures returned by `.map()`: a list with `.wait()` and `.result()` over all of them."""

    def wait(self, timeout: float | None = None) -> None:
        wait(self, timeout=timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> list[Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        classes = {type(fut) for fut in self}
        by_class: dict[type[TaskRunFuture[Any]], list[Any]]
        if len(classes) == 1:  # the usual case: one runner's futures
            by_class = {classes.pop(): self}
        else:
            by_class = {cls: [] for cls in classes}
            for fut in self:
                by_class[type(fut)].append(fut)
        for cls, futs in by_class.items():  # e.g. one request per cluster instead of one per element
            # every future class defines fetch_many (TaskRunFuture's does nothing)
            cls.fetch_many(futs, timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
        out: list[Any] = []
        append = out.append
        COMPLETED = StateType.COMPLETED  # noqa: N806 (a local, for the loop)
        for fut in self:
            final = fut._final if isinstance(fut, SettableFuture) else None
            if final is not None:  # done: what its `result()` returns, without the waiting and checks
                if final.type is COMPLETED and final.data is not UNSET:  # (`State.result` of a held value)
                    append(final.data)
                else:
                    append(final.result(raise_on_failure=raise_on_failure))
                continue
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            append(fut.result(timeout=remaining, raise_on_failure=raise_on_failure))
        return out


PrefectFutureList = FutureList


class DoneAndNotDoneFutures(NamedTuple):
    done: set[TaskRunFuture[Any]]
    not_done: set[TaskRunFuture[Any]]


def wait(futures: Iterable[TaskRunFuture[Any]], timeout: float | None = None) -> DoneAndNotDoneFutures:
    """Wait until all `futures` are done or `timeout` seconds have passed; return `(done, not_done)`."""
    futures = list(futures)
    deadline = None if timeout is None else time.monotonic() + timeout
    for fut in futures:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        fut.wait(remaining)
        if deadline is not None and remaining == 0.0:
            break
    done: set[TaskRunFuture[Any]] = set()
    not_done: set[TaskRunFuture[Any]] = set()
    for fut in futures:
        (done if fut.done() else not_done).add(fut)
    return DoneAndNotDoneFutures(done, not_done)


def as_completed(futures: Iterable[TaskRunFuture[Any]], timeout: float | None = None) -> Iterator[TaskRunFuture[Any]]:
    """Yield futures as they finish. Raises `TimeoutError` if some are not done after `timeout` seconds."""
    pending = {id(f): f for f in futures}
    finished: queue.SimpleQueue[TaskRunFuture[Any]] = queue.SimpleQueue()
    for fut in list(pending.values()):
        fut.add_done_callback(finished.put)
    deadline = None if timeout is None else time.monotonic() + timeout
    while pending:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            break
        try:
            fut = finished.get(timeout=remaining)
        except queue.Empty:
            break
        if pending.pop(id(fut), None) is not None:
            yield fut
    if pending:
        raise TimeoutError(f"{len(pending)} of the futures were not done within {timeout} seconds.")


__all__ = ["TaskRunFuture", "SettableFuture", "PrefectFuture", "FutureList", "PrefectFutureList", "wait", "as_completed",
           "DoneAndNotDoneFutures"]
