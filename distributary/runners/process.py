"""`ProcessPoolTaskRunner`: task runs execute in worker processes (cloudpickle, so tasks defined in `__main__`
and closures work). Arguments are resolved in the driver and sent with the call; the worker runs the whole task
run (retries, caching, hooks) and sends back the final state and the run's history.

A timeout stops the work for real: the worker's main thread gets SIGALRM, which interrupts sleeps and I/O.
A worker that dies mid-run ends the run `Crashed` (or retries it, if it has retries left).
"""
from __future__ import annotations

import multiprocessing
import os
import pickle
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import cloudpickle

from .. import states as S
from ..engine import TaskCall, run_call
from ..errors import ConfigurationError, SerializationError, UpstreamTaskError, WorkerCrashedError
from ..engine.resolve import find_upstreams, resolve_parameters
from ..runs import TaskRun
from ..states import State
from .base import TaskRunner, gate
from .thread import LocalFuture


# ---------------------------------------------------------------------------------------------------------------
# Worker side
# ---------------------------------------------------------------------------------------------------------------
def run_pickled_call(payload: bytes) -> bytes:
    """Run a cloudpickled TaskCall in this (worker) process and return the pickled (state, task_run)."""
    call: TaskCall = cloudpickle.loads(payload)
    if call.settings_env:
        os.environ.update(call.settings_env)
    state = run_call(call)
    return pack_outcome(call, state)


def pack_outcome(call: TaskCall, state: State) -> bytes:
    """Pickle the final state and the run record; a value or exception that cannot be pickled fails the run
    with an error naming the task and the value's type (the process itself carries on)."""
    run = call.task_run
    run.parameters = {}  # the driver has them already
    try:
        return cloudpickle.dumps((state, run))
    except Exception as exc:
        what = state.data
        kind = "result" if state.is_completed() else "exception"
        err = SerializationError(
            f"Task run {run.name!r} of task {call.task.name!r} returned a {kind} of type "
            f"{type(what).__name__} that cannot be sent back from the worker process ({exc!r}). Return a "
            f"picklable value, or persist it (persist_result=True) and return a reference.")
        failed = S.Failed(message=str(err), data=err)
        run.state_history = [s.without_data() for s in run.state_history[:-1]] + [failed]
        run.state = failed
        return cloudpickle.dumps((failed, run))


# ---------------------------------------------------------------------------------------------------------------
# Driver side
# ---------------------------------------------------------------------------------------------------------------
def dumps_call(call: TaskCall) -> bytes:
    """Pickle a call for a worker; an unpicklable task or argument raises SerializationError naming it."""
    try:
        return cloudpickle.dumps(call)
    except Exception as exc:
        culprit = _find_unpicklable(call)
        raise SerializationError(f"Task {call.task.name!r} cannot be sent to a worker process: {culprit} "
                                 f"cannot be pickled ({exc!r}). Use the thread runner, or pass something "
                                 f"picklable.") from exc


def _find_unpicklable(call: TaskCall) -> str:
    try:
        cloudpickle.dumps(call.task)
    except Exception:
        return f"the task function {call.task.fn!r}"
    for name, value in call.parameters.items():
        try:
            cloudpickle.dumps(value)
        except Exception:
            return f"argument {name!r} (a value of type {type(value).__name__})"
    return "part of the call"


class ProcessPoolTaskRunner(TaskRunner):
    """Runs task runs in up to `max_workers` processes (default: the number of CPUs)."""

    name = "processes"

    def __init__(self, max_workers: int | None = None, mp_context: str | None = None):
        super().__init__()
        if max_workers is not None and (not isinstance(max_workers, int) or max_workers < 1):
            raise ConfigurationError(f"ProcessPoolTaskRunner: max_workers must be a whole number >= 1, "
                                     f"got {max_workers!r}.")
        self.max_workers = max_workers or (os.cpu_count() or 1)
        self._requested = max_workers
        self.mp_context = mp_context

    def _config(self) -> dict[str, Any]:
        return {"max_workers": self._requested, "mp_context": self.mp_context}

    def start(self) -> None:
        self._lock = threading.Lock()
        self._pool = self._new_pool()
        self._futures: list[LocalFuture] = []

    def _new_pool(self) -> ProcessPoolExecutor:
        method = self.mp_context or ("forkserver" if "forkserver" in multiprocessing.get_all_start_methods()
                                     else "spawn")
        return ProcessPoolExecutor(self.max_workers, mp_context=multiprocessing.get_context(method))

    def submit_call(self, call: TaskCall) -> LocalFuture:
        fut = LocalFuture(call, None)
        fut._claim = []  # never run in this process
        self._futures.append(fut)
        deps = find_upstreams(call.parameters, call.wait_for)
        if deps:
            gate(deps, lambda: self._send(fut, call))
        else:
            self._send(fut, call)
        return fut

    def submit_calls(self, calls: Sequence[TaskCall]) -> list[LocalFuture]:
        return [self.submit_call(c) for c in calls]

    def _send(self, fut: LocalFuture, call: TaskCall) -> None:
        run = call.task_run
        try:
            call.parameters = resolve_parameters(call.parameters)
        except UpstreamTaskError as exc:
            return self._finish_locally(fut, run, S.NotReady(message=str(exc), data=exc))
        except Exception as exc:
            return self._finish_locally(fut, run, S.Failed(message=str(exc), data=exc))
        try:
            payload = dumps_call(call)
        except SerializationError as exc:
            return self._finish_locally(fut, run, S.Failed(message=str(exc), data=exc))
        self._dispatch(fut, call, payload)

    def _dispatch(self, fut: LocalFuture, call: TaskCall, payload: bytes) -> None:
        with self._lock:
            pool = self._pool
        try:
            cf = pool.submit(run_pickled_call, payload)
        except (BrokenProcessPool, RuntimeError):
            pool = self._replace_pool(pool)
            cf = pool.submit(run_pickled_call, payload)
        cf.add_done_callback(lambda f: self._on_done(fut, call, payload, pool, f))

    def _replace_pool(self, broken: ProcessPoolExecutor) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is broken:
                broken.shutdown(wait=False, cancel_futures=False)
                self._pool = self._new_pool()
            return self._pool

    def _on_done(self, fut: LocalFuture, call: TaskCall, payload: bytes, pool: ProcessPoolExecutor,
                 cf: Future) -> None:
        run = call.task_run
        exc = cf.exception()
        if exc is None:
            state, remote_run = pickle.loads(cf.result())
            remote_run.parameters = run.parameters
            run.update_from(remote_run)
            fut.set_final(state)
            return
        if isinstance(exc, BrokenProcessPool):
            # The worker died. Retry on a fresh pool if the task has retries left.
            run.run_count += 1
            crashed = S.Crashed(message=f"The worker process running task run {run.name!r} died "
                                        f"({exc}).", data=WorkerCrashedError(str(exc)))
            run.set_state(crashed)
            self._replace_pool(pool)
            if run.run_count <= call.task.retries:
                run.set_state(S.AwaitingRetry(message="worker died; retrying"))
                threading.Thread(target=self._dispatch, args=(fut, call, payload), daemon=True).start()
                return
            run.end_ts = crashed.ts
            fut.set_final(crashed)
            return
        self._finish_locally(fut, run, S.Crashed(message=f"Task run {run.name!r} could not run in a worker "
                                                         f"process: {exc!r}", data=exc))

    @staticmethod
    def _finish_locally(fut: LocalFuture, run: TaskRun, state: State) -> None:
        run.set_state(state)
        fut.set_final(state)

    def shutdown(self) -> None:
        for fut in self._futures:
            fut.wait()
        self._futures = []
        self._pool.shutdown(wait=True)
