"""What the cluster runners (Dask, Ray) share on the driver: packing task runs into batches, a bounded feeder,
futures whose values stay on the cluster, and telemetry from workers. Backend-neutral: no dask or ray here.

# remote-api: v1
(API of this module and of `remote_worker`, which it re-exports: names are only ever added, never renamed.)

A backend subclasses `RemoteTaskRunner` (in remote_runner.py; importable from here too) and implements
`_connect`, `_disconnect` and the `_backend_*` hooks; on the worker it calls `run_batch(...)` (remote_worker.py)
after `telemetry_sender().set_transport(...)`, and feeds what arrives on the driver to `runner._receiver.handle`.

Packing (when it packs, and how to turn it off)
    `.map()` over n elements, with `batch_size=None` (the default), is cut into batches of
    `ceil(n / (PER_THREAD * worker_threads))` consecutive task runs, at most `MAX_BATCH`; each batch is ONE
    cluster task. So a map packs only when it has more than PER_THREAD (4) runs per worker thread, and each
    thread still gets about four batches to balance load. `.submit()` never packs. `batch_size=1` turns packing
    off; `batch_size=k` packs exactly k. Inside a batch the runs execute one after another in one worker thread,
    each with its own states, retries, cache lookup, persistence, hooks and result; a retry delay of one run
    holds back the runs after it in the same batch.
Bounded in flight
    At most `max_in_flight` batches (default `max(16, 4 * worker_threads)`) are on the cluster at once; the
    rest wait on the driver and one feeder thread sends more as batches finish, so the scheduler holds a
    bounded number of pending tasks whatever the number of task runs.
Data path
    The task is pickled once per runner and handed to the backend once (`_backend_put_task`); each worker
    unpickles it once (`load_task`, cached by digest). A future passed to a downstream task becomes an
    `Upstream(slot, index)` placeholder plus a native dependency on the upstream's batch, so values move worker
    to worker. The driver receives only a small `BatchSummary` per batch (states without values); a value
    comes to the driver on `.result()`, and `FutureList.result()` fetches each batch once.
Worker death
    A batch whose worker died mid-run is not re-run blindly. One task run alone: it is retried if it has
    retries left, else it ends Crashed saying the worker died. Several runs: which one crashed is not known,
    so they are sent again one per cluster task (no retry used up); the run that kills its worker again is
    then retried or Crashed.
Telemetry
    Log records made on workers (`get_run_logger()`, `log_prints`) and the live states of runs that are still
    running are shipped in batches at least every `TELEMETRY_INTERVAL` s; the driver re-emits the records
    (`logging.emit_remote`) and shows live states on `future.state`. Final states come with the batch summary.
"""
from __future__ import annotations

import math
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .. import states as S
from ..engine import TaskCall
from ..futures import SettableFuture, TaskRunFuture
from ..logging import emit_remote, engine_logger
from ..runs import TaskRun
from ..states import State, StateType
from .remote_worker import (LOG, STATE, TELEMETRY_INTERVAL, BatchHeader, BatchResult, BatchSummary, CallSpec,
                            Settled, SettledFuture, TelemetrySender, Upstream, decode_telemetry, encode_telemetry,
                            install_log_forwarding, link_upstreams, load_task, run_batch, telemetry_sender)

if TYPE_CHECKING:
    from ..tasks import Task
    from .remote_runner import RemoteTaskRunner

T = TypeVar("T")
PER_THREAD = 4
MAX_BATCH = 1000
_THREADS_TTL = 5.0


# ---------------------------------------------------------------------------------------------------------------
# Packing policy
# ---------------------------------------------------------------------------------------------------------------
def choose_batch_size(n_calls: int, worker_threads: int, batch_size: int | None = None,
                      per_thread: int = PER_THREAD, cap: int = MAX_BATCH) -> int:
    """Task runs per cluster task for a `.map()` of `n_calls` runs (see the module docstring)."""
    if batch_size is not None:
        return max(1, batch_size)
    return max(1, min(cap, math.ceil(n_calls / (max(1, worker_threads) * per_thread))))


def plan_batches(items: Sequence[T], size: int) -> list[Sequence[T]]:
    """Consecutive chunks of `items`, `size` each (the last may be shorter)."""
    return [items[i:i + size] for i in range(0, len(items), size)]


# ---------------------------------------------------------------------------------------------------------------
# Driver-side states, futures and batches
# ---------------------------------------------------------------------------------------------------------------
class RemoteState(State):
    """A final state whose value may still be on the cluster; `result()` fetches it (with its whole batch)."""

    __slots__ = ("batch", "index")

    def result(self, raise_on_failure: bool = True, fetch: bool = True) -> Any:
        if fetch and self.data is S.UNSET and self.batch is not None and self.type is StateType.COMPLETED:
            self.batch.fetch_values()
        return State.result(self, raise_on_failure, fetch)

    def __reduce__(self) -> tuple:
        if self.data is S.UNSET and self.batch is not None and self.type is StateType.COMPLETED:
            self.batch.fetch_values()
        return (State, (self.type, self.name, self.message, self.data, self.result_ref, self.ts))


class RemoteFuture(SettableFuture):
    """Future of a task run executed by a cluster runner. Its state is the driver's task-run record (kept up to
    date from worker telemetry); once done, `result()` fetches the value from the cluster."""

    __slots__ = ()

    @classmethod
    def fetch_many(cls, futures: Sequence[TaskRunFuture], timeout: float | None = None) -> None:
        """Wait for `futures` and fetch the values they still lack, each batch once, in one request per runner."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for f in futures:
            f.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        by_runner: dict[int, tuple[RemoteTaskRunner, dict[int, Batch]]] = {}
        for f in futures:
            st = f.state if f.done() else None
            if isinstance(st, RemoteState) and st.batch is not None and st.data is S.UNSET:
                b = st.batch
                by_runner.setdefault(id(b.runner), (b.runner, {}))[1][id(b)] = b
        for runner, batches in by_runner.values():
            runner.fetch_values(list(batches.values()))

    def __reduce__(self) -> tuple:
        raise TypeError(f"the future of task run {self.task_run.name!r} cannot be sent to a worker as such; pass "
                        f"it as a task argument (not inside quote()) so it resolves to its value")


class Batch:
    """Task runs of one task sent together as one cluster task, and, once done, where their values are."""

    __slots__ = ("id", "runner", "task", "calls", "runs", "futures", "ref", "summary_ref", "states", "fetched",
                 "__weakref__")

    def __init__(self, runner: "RemoteTaskRunner", calls: Sequence[TaskCall],
                 futures: Sequence[weakref.ref]):
        self.id = f"{runner._id[:8]}-{next(runner._counter)}"
        self.runner = runner
        self.task: "Task" = calls[0].task
        self.calls: list[TaskCall] | None = list(calls)
        self.runs: list[TaskRun] = [c.task_run for c in calls]
        self.futures = list(futures)
        self.ref: Any = None          # the backend's handle to this batch's BatchResult
        self.summary_ref: Any = None  # the backend's handle to its BatchSummary, if separate
        self.states: list[RemoteState] | None = None
        self.fetched = False

    def fetch_values(self) -> None:
        self.runner.fetch_values([self])


# ---------------------------------------------------------------------------------------------------------------
# Telemetry, driver side
# ---------------------------------------------------------------------------------------------------------------
class TelemetryReceiver:
    """Takes in telemetry payloads (from any transport): re-emits log records on the driver's console and
    passes live states to `on_state(run_id_int, state)`. Payloads of other channels are ignored."""

    def __init__(self, channel: str, on_state: Callable[[int, State], None]):
        self.channel = channel
        self.on_state = on_state

    def handle(self, payload: bytes) -> None:
        try:
            channel, records = decode_telemetry(payload)
        except Exception as exc:
            engine_logger("runners").warning("Dropped a telemetry message that could not be read: %r", exc)
            return
        if channel != self.channel:
            return
        for kind, data in records:
            if kind == LOG:
                emit_remote(data)
            elif kind == STATE:
                self.on_state(*data)


class _Feeder:
    """The one driver thread that sends ready batches (at most `limit` in flight) and applies finished ones."""

    def __init__(self, runner: "RemoteTaskRunner"):
        self.runner = runner
        self.cond = threading.Condition()
        self.ready_q: deque[Batch] = deque()
        self.done_q: list[Batch] = []
        self.in_flight = 0
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, name=f"distributary-{runner.name}-feeder", daemon=True)
        self.thread.start()

    def ready(self, batch: Batch) -> None:
        with self.cond:
            self.ready_q.append(batch)
            self.cond.notify()

    def finished(self, batch: Batch) -> None:
        with self.cond:
            self.done_q.append(batch)
            self.cond.notify()

    def alive(self) -> bool:
        return self.thread.is_alive()

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify()
        if threading.current_thread() is not self.thread:
            self.thread.join(10)

    def _loop(self) -> None:
        r = self.runner
        while True:
            limit = r._in_flight_limit()
            with self.cond:
                while not (self.stopping or self.done_q or (self.ready_q and self.in_flight < limit)):
                    self.cond.wait(1.0)
                    limit = r._in_flight_limit()
                if self.stopping:
                    return
                done, self.done_q = self.done_q, []
                send = [self.ready_q.popleft() for _ in range(min(len(self.ready_q), max(0, limit - self.in_flight)))]
                self.in_flight += len(send) - len(done)
            try:
                if done:
                    again = r._settle(done)
                    if again:
                        with self.cond:
                            self.in_flight += again
                for batch in send:
                    if not r._send(batch):
                        with self.cond:
                            self.in_flight -= 1
            except BaseException as exc:  # keep feeding; the batches at hand end Crashed
                engine_logger("runners").exception("The feeder of %r failed", r)
                for batch in done + send:
                    r._crash(batch, f"was lost by the driver's feeder ({exc!r})", exc)


def __getattr__(name: str) -> Any:
    # The runner base lives in remote_runner.py (it imports this module); re-exported here on first use.
    if name == "RemoteTaskRunner":
        from .remote_runner import RemoteTaskRunner

        return RemoteTaskRunner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["RemoteTaskRunner", "RemoteFuture", "RemoteState", "Batch", "TelemetryReceiver", "choose_batch_size",
           "plan_batches", "PER_THREAD", "MAX_BATCH", "BatchHeader", "BatchResult", "BatchSummary", "CallSpec",
           "Upstream", "Settled", "SettledFuture", "run_batch", "load_task", "link_upstreams", "TelemetrySender",
           "telemetry_sender", "install_log_forwarding", "encode_telemetry", "decode_telemetry", "LOG", "STATE",
           "TELEMETRY_INTERVAL"]
