"""`ThreadPoolTaskRunner`, the default runner: task runs execute in a pool of threads in the driver process.

A worker thread that waits on a future whose run has not started yet runs it itself ("work stealing"), so a task
that submits tasks and waits for them never deadlocks the pool, whatever `max_workers` is.
"""
from __future__ import annotations

import os
import queue
import threading
from collections.abc import Sequence
from typing import Any

from .. import states as S
from ..engine import TaskCall, run_call, transitions
from ..engine.futures import SettableFuture, TaskRunFuture
from ..engine.resolve import find_upstreams
from ..errors import ConfigurationError
from ..logging import engine_logger
from ..states import State
from .base import TaskRunner, gate


class LocalFuture(SettableFuture):
    """Future of a task run executed in this process. The run is executed once, by whichever thread claims it
    first (a pool worker, or a worker thread waiting for it)."""

    __slots__ = ("_call", "_claim", "_runner", "_deps")

    def __init__(self, call: TaskCall, runner: ThreadPoolTaskRunner | None):
        super().__init__(call.task_run)
        self._call: TaskCall | None = call
        self._claim = [True]
        self._runner = runner
        self._deps: list[TaskRunFuture] | None = None

    def execute(self) -> bool:
        """Run the task run here unless another thread already claimed it."""
        try:
            self._claim.pop()
        except IndexError:
            return False
        call = self._call
        assert call is not None
        try:
            # The submitter's context (flow run, tags), copied: a map's calls share one snapshot.
            state = call.context.copy().run(run_call, call) if call.context is not None else run_call(call)
        except BaseException as exc:  # the engine only lets interrupts and its own bugs through
            state = S.Crashed(message=f"Task run {call.task_run.name!r} crashed: {exc!r}", data=exc)
            if not call.task_run.abandoned:
                transitions.set_state(call.task_run, state)
                transitions.run_finished(call.task_run)
                self.set_final(state)
            if not isinstance(exc, Exception):
                raise
            engine_logger("runners").exception("Task run %r crashed", call.task_run.name)
            return True
        if self._final is None:  # else the run was abandoned (cancel_all): its late outcome is not the future's
            self.set_final(state)
        return True

    def cancel(self, reason: str) -> bool:
        """End the run Cancelled if no thread has claimed it yet; False if one is running it."""
        try:
            self._claim.pop()
        except IndexError:
            return False
        run = self.task_run
        state = S.Cancelled(message=f"Task run {run.name!r} was cancelled before it started: {reason}.")
        transitions.set_state(run, state)
        transitions.run_finished(run)
        self.set_final(state)
        return True

    def set_final(self, state: State) -> None:
        self._call = None
        self._deps = None
        super().set_final(state)

    def wait(self, timeout: float | None = None) -> None:
        if self._final is None:
            runner = self._runner
            if runner is not None and getattr(threading.current_thread(), "_distributary_runner", None) is runner:
                self._steal()
        super().wait(timeout)

    def _steal(self) -> None:
        deps = self._deps
        if deps:
            for d in deps:
                d.wait()
        if self._call is not None:
            self.execute()


class ThreadPoolTaskRunner(TaskRunner):
    """Runs task runs in up to `max_workers` threads (default: min(32, CPUs + 4), as concurrent.futures)."""

    name = "threads"

    def __init__(self, max_workers: int | None = None):
        super().__init__()
        if max_workers is not None and (not isinstance(max_workers, int) or max_workers < 1):
            raise ConfigurationError(f"ThreadPoolTaskRunner: max_workers must be a whole number >= 1, "
                                     f"got {max_workers!r}.")
        self.max_workers = max_workers or min(32, (os.cpu_count() or 1) + 4)
        self._requested = max_workers

    def _config(self) -> dict[str, Any]:
        return {"max_workers": self._requested}

    def start(self) -> None:
        self._queue: queue.SimpleQueue[LocalFuture | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = threading.Semaphore(0)
        self._futures: list[LocalFuture] = []
        self._abandoned = False

    def submit_call(self, call: TaskCall) -> LocalFuture:
        fut = LocalFuture(call, self)
        self._futures.append(fut)
        deps = find_upstreams(call.parameters, call.wait_for)
        if deps:
            fut._deps = deps
            gate(deps, lambda: self._put(fut))
        else:
            self._put(fut)
        return fut

    def submit_calls(self, calls: Sequence[TaskCall]) -> list[LocalFuture]:
        return [self.submit_call(c) for c in calls]

    def _put(self, fut: LocalFuture) -> None:
        self._queue.put(fut)
        if self._idle.acquire(blocking=False):
            return
        if len(self._threads) < self.max_workers:
            t = threading.Thread(target=self._work, name=f"distributary-thread-{len(self._threads)}", daemon=True)
            t._distributary_runner = self  # type: ignore[attr-defined]
            self._threads.append(t)
            t.start()

    def _work(self) -> None:
        get, idle = self._queue.get, self._idle
        while True:
            fut = get()
            if fut is None:
                break
            fut.execute()
            idle.release()

    def cancel_all(self, reason: str) -> None:
        """Runs not started end Cancelled. A thread cannot be stopped from outside: a running run is abandoned
        (its future ends Cancelled, a WARNING names it; the thread runs on and its outcome is ignored)."""
        self._abandoned = True
        log = engine_logger("runners")
        for fut in list(self._futures):
            if fut.done() or fut.cancel(reason) or fut.task_run.state.is_final():  # final: its future is due
                continue
            run = fut.task_run
            state = S.Cancelled(message=f"Task run {run.name!r} was abandoned while running: {reason}; its "
                                        f"thread cannot be stopped and runs on, its outcome is ignored.")
            log.warning("Task run %r is still running in a thread, which cannot be stopped: abandoned (%s).",
                        run.name, reason)
            transitions.abandon(run, state)  # what the thread does later changes neither state nor history
            fut.set_final(state)

    def shutdown(self) -> None:
        for fut in self._futures:
            fut.wait()
        for _ in self._threads:
            self._queue.put(None)
        if not self._abandoned:  # after cancel_all a thread may run on for ever: never wait for it
            for t in self._threads:
                t.join()
        self._futures = []
        self._threads = []
