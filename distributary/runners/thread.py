"""`ThreadPoolTaskRunner`, the default runner: task runs execute in a pool of threads in the driver process.

A worker thread that waits on a future whose run has not started yet runs it itself ("work stealing"), so a task
that submits tasks and waits for them never deadlocks the pool, whatever `max_workers` is.
"""
from __future__ import annotations

import os
import queue
import threading
from collections.abc import Sequence
from functools import partial
from typing import Any

from .. import states as S
from ..engine import TaskCall, run_call, transitions
from ..engine.futures import SettableFuture, TaskRunFuture
from ..engine.gcpause import gc_paused
from ..engine.resolve import find_upstreams
from ..errors import ConfigurationError
from ..logging import engine_logger
from ..states import State
from .base import TaskRunner, gate

_claim_lock = threading.Lock()  # held for a test-and-clear of one future's call: never contended for long


class LocalFuture(SettableFuture):
    """Future of a task run executed in this process. The run is executed once, by whichever thread claims it
    first (a pool worker, or a worker thread waiting for it): claiming takes the future's call."""

    __slots__ = ("_call", "_runner", "_deps", "_batch")

    def __init__(self, call: TaskCall, runner: ThreadPoolTaskRunner | None):
        super().__init__(call.task_run)
        self._call: TaskCall | None = call
        self._runner = runner
        self._deps: list[TaskRunFuture] | None = None
        self._batch: _Batch | None = None

    def _claim(self) -> TaskCall | None:
        """The call, taken by this thread; None if another thread (or cancel) took it first."""
        with _claim_lock:
            call = self._call
            self._call = None
        return call

    def execute(self) -> bool:
        """Run the task run here unless another thread already claimed it."""
        call = self._claim()
        if call is None:
            return False
        try:
            # The submitter's context (flow run, tags), copied: a map's calls share one snapshot.
            state = call.context.copy().run(run_call, call) if call.context is not None else run_call(call)
        except BaseException as exc:  # the engine only lets interrupts and its own bugs through
            state = S.Crashed(message=f"Task run {call.task_run.name!r} crashed: {exc!r}", data=exc)
            if not call.task_run.abandoned:
                transitions.finish(call.task_run, state)
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
        if self._claim() is None:
            return False
        run = self.task_run
        state = S.Cancelled(message=f"Task run {run.name!r} was cancelled before it started: {reason}.")
        transitions.finish(run, state)
        self.set_final(state)
        return True

    def set_final(self, state: State) -> None:
        self._deps = None
        super().set_final(state)
        batch = self._batch
        if batch is not None:
            batch.one_done()

    @classmethod
    def fetch_many(cls, futures: list[TaskRunFuture[Any]], timeout: float | None = None) -> None:
        """The futures of a whole `.map()` (its FutureList): one wait for the batch instead of one per run, so the
        waiting thread wakes once, not once per run. Anything else is waited for run by run, by `result()`."""
        first = futures[0] if futures else None
        batch = getattr(first, "_batch", None)
        if batch is not None and batch.size == len(futures) and all(
                getattr(f, "_batch", None) is batch for f in futures):
            runner = batch.runner
            if getattr(threading.current_thread(), "_distributary_runner", None) is not runner:
                batch.wait(timeout)  # a pool thread waits run by run instead: it runs what it waits for

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


class _Batch:
    """The runs of one `.map()` with no upstreams, queued once per worker instead of once per run: each worker
    that takes it draws runs one at a time (`next` on a list iterator is atomic), so runs start as they would from
    a queue of single runs, without a queue operation or a wake-up per run."""

    __slots__ = ("runs", "size", "runner", "_left", "_lock", "_done")

    def __init__(self, futures: list[LocalFuture], runner: ThreadPoolTaskRunner):
        self.runs = iter(futures)
        self.size = len(futures)
        self.runner = runner
        self._left = len(futures)
        self._lock = threading.Lock()
        self._done = threading.Event()

    def one_done(self) -> None:
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            self._done.set()
            # the map's last events go to the sinks now, while its caller collects the results, not at the flow's
            # end (below the task threads' delivery threshold they would wait for it)
            transitions.deliver()

    def wait(self, timeout: float | None) -> None:
        self._done.wait(timeout)

    def drain(self) -> None:
        for fut in self.runs:
            fut.execute()


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
        self._queue: queue.SimpleQueue[LocalFuture | _Batch | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
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
        if len(calls) < 2:
            return [self.submit_call(c) for c in calls]
        with gc_paused():  # the futures are no garbage (the pool's threads start only below)
            futures = [LocalFuture(c, self) for c in calls]
            self._futures.extend(futures)
            ready: list[LocalFuture] = []
            gated: list[tuple[LocalFuture, list[TaskRunFuture]]] = []
            for fut, call in zip(futures, calls):
                deps = find_upstreams(call.parameters, call.wait_for)
                if deps:
                    fut._deps = deps
                    gated.append((fut, deps))
                else:
                    ready.append(fut)
        for fut, deps in gated:  # outside the pause: a done upstream releases (and may start a thread) at once
            gate(deps, partial(self._put, fut))
        if len(ready) < 2:
            for fut in ready:
                self._put(fut)
        elif ready:
            batch = _Batch(ready, self)
            if len(ready) == len(futures):
                for fut in ready:
                    fut._batch = batch
            for _ in range(min(len(ready), self.max_workers)):
                self._put(batch)
        return futures

    def _put(self, item: LocalFuture | _Batch) -> None:
        # The pool grows by one thread per queued item up to max_workers and keeps them until shutdown: no
        # idle-thread count to keep per run (a Python-level semaphore costs more than the run's engine work).
        self._queue.put(item)
        if len(self._threads) < self.max_workers:
            t = threading.Thread(target=self._work, name=f"distributary-thread-{len(self._threads)}", daemon=True)
            t._distributary_runner = self  # type: ignore[attr-defined]
            self._threads.append(t)
            t.start()

    def _work(self) -> None:
        get = self._queue.get
        while True:
            item = get()
            if item is None:
                break
            if isinstance(item, LocalFuture):
                item.execute()
            else:
                item.drain()

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
