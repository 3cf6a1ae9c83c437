"""`RemoteTaskRunner`: the driver side every cluster runner shares (Dask, Ray). It packs task runs into batches,
holds batches back until their upstream futures are done, feeds them to the cluster with a bounded number in
flight, applies their outcomes to the driver's task-run records, and handles dead workers. See `runners.remote`
for the policy (when it packs, the data path, telemetry); a backend implements only the `_backend_*` hooks.
"""
from __future__ import annotations

import hashlib
import itertools
import threading
import time
import uuid
import weakref
from abc import abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import cloudpickle

from .. import states as S
from ..engine import TaskCall
from ..errors import ConfigurationError, MissingResult, SerializationError, WorkerCrashedError
from ..futures import TaskRunFuture
from ..logging import engine_logger
from ..engine.resolve import find_upstreams, map_nested, needs_resolution
from ..runs import TaskRun
from ..states import State
from .base import TaskRunner, gate
from .remote import (Batch, RemoteFuture, RemoteState, TelemetryReceiver, _Feeder, choose_batch_size)
from .remote_worker import BatchHeader, BatchResult, BatchSummary, CallSpec, Settled, Upstream

if TYPE_CHECKING:
    from ..tasks import Task

_THREADS_TTL = 5.0


# ---------------------------------------------------------------------------------------------------------------
class RemoteTaskRunner(TaskRunner):
    """Driver side of a cluster runner: batches, gating on upstream futures, the feeder, outcomes, worker death.

    Subclasses implement `_connect()`/`_disconnect()` and the `_backend_*` hooks below.
    """

    def __init__(self, batch_size: int | None = None, max_in_flight: int | None = None):
        super().__init__()
        for name, v in (("batch_size", batch_size), ("max_in_flight", max_in_flight)):
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ConfigurationError(f"{type(self).__name__}: {name} must be a whole number >= 1 or None, "
                                         f"got {v!r}.")
        self.batch_size = batch_size
        self.max_in_flight = max_in_flight

    # -- what a backend implements ----------------------------------------------------------------------------
    @abstractmethod
    def _connect(self) -> None:
        """Reach or start the cluster; subscribe `self._receiver.handle` to the telemetry transport."""

    @abstractmethod
    def _disconnect(self) -> None:
        """Release the connection; stop the cluster only if this runner started it."""

    @abstractmethod
    def _backend_threads(self) -> int:
        """Worker threads in the cluster now (for batch sizes and the in-flight bound)."""

    @abstractmethod
    def _backend_put_task(self, payload: bytes, digest: str) -> Any:
        """Store a pickled task on the cluster once; return the handle passed to `_backend_submit`."""

    @abstractmethod
    def _backend_submit(self, batch: Batch, task_ref: Any, payload: bytes, upstream_refs: list[Any]) -> None:
        """Run `run_batch(task_payload, payload, upstream_results, worker)` on the cluster, set `batch.ref` (and
        `batch.summary_ref`), and call `self._batch_finished(batch)` from any thread once it is done."""

    @abstractmethod
    def _backend_collect(self, batches: list[Batch]) -> list[BatchSummary | BaseException | None]:
        """The summaries of finished batches (or the error each ended with), fetched together. None for a batch
        that turned out not to be finished after all; the backend calls `_batch_finished` for it again."""

    @abstractmethod
    def _backend_fetch(self, batches: list[Batch]) -> list[BatchResult | BaseException]:
        """The BatchResults (values) of settled batches, fetched together."""

    def _backend_worker_died(self, exc: BaseException) -> bool:
        """Whether a batch's error means its worker died (the run may be retried)."""
        return False

    def _backend_settled(self, batches: list[Batch]) -> None:
        """Hook: these batches' summaries were applied."""

    def _backend_release(self, batches: list[Batch]) -> None:
        """Hook: drop the cluster's copies of these batches' results."""

    # -- TaskRunner -------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._id = uuid.uuid4().hex
        self._counter = itertools.count()
        self._receiver = TelemetryReceiver(self._id, self._live_state)
        self._tasks: dict[int, tuple[Any, str, Any]] = {}
        self._live: dict[int, TaskRun] = {}
        self._open: set[Batch] = set()
        self._holding: list[Batch] = []  # settled batches whose values are still on the cluster
        self._holding_set: set[Batch] = set()
        self._lock = threading.Condition()
        self._fetch_lock = threading.Lock()
        self._closed = False
        self._threads_at = (-1e9, 1)
        self._connect()
        self._pump = _Feeder(self)

    def shutdown(self) -> None:
        try:
            self._drain()
        finally:
            self._pump.stop()
            self._abandon("the task runner shut down before the run finished")
            self._closed = True
            try:
                self._backend_release(self._holding)
            finally:
                self._holding = []
                self._holding_set = set()
                self._tasks = {}
                self._disconnect()

    def submit_call(self, call: TaskCall) -> RemoteFuture:
        return self.submit_calls([call])[0]

    def submit_calls(self, calls: Sequence[TaskCall]) -> list[RemoteFuture]:
        futures = [RemoteFuture(c.task_run) for c in calls]
        refs = [weakref.ref(f) for f in futures]
        n = len(calls)
        size = 1 if n == 1 else choose_batch_size(n, self._threads(), self.batch_size)
        for i in range(0, n, size):
            self._enqueue(Batch(self, calls[i:i + size], refs[i:i + size]))
        return futures

    # -- driver internals -------------------------------------------------------------------------------------
    def _threads(self) -> int:
        at, n = self._threads_at
        now = time.monotonic()
        if now - at > _THREADS_TTL:
            try:
                n = max(1, self._backend_threads())
            except Exception as exc:  # keep the last known number; the cluster may be busy or scaling
                engine_logger("runners").debug("Could not count worker threads: %r", exc)
            self._threads_at = (now, n)
        return n

    def _in_flight_limit(self) -> int:
        return self.max_in_flight or max(16, 4 * self._threads())

    def _enqueue(self, batch: Batch) -> None:
        with self._lock:
            self._open.add(batch)
        deps: dict[int, TaskRunFuture] = {}
        for c in batch.calls or ():
            if c.wait_for or needs_resolution(c.parameters):
                for d in find_upstreams(c.parameters, c.wait_for):
                    if not d.done():
                        deps[id(d)] = d
        if deps:
            gate(list(deps.values()), lambda: self._pump.ready(batch))
        else:
            self._pump.ready(batch)

    def _task_ref(self, task: "Task") -> tuple[Any, str]:
        hit = self._tasks.get(id(task))
        if hit is not None and hit[0] is task:
            return hit[2], hit[1]
        try:
            payload = cloudpickle.dumps(task, protocol=5)
        except Exception as exc:
            raise SerializationError(f"Task {task.name!r} cannot be sent to a worker: its function or options "
                                     f"cannot be pickled ({exc!r}). Define it at module level, or use the "
                                     f"thread runner.") from exc
        digest = hashlib.sha1(payload).hexdigest()
        ref = self._backend_put_task(payload, digest)
        self._tasks[id(task)] = (task, digest, ref)
        return ref, digest

    def _send(self, batch: Batch) -> bool:
        """Pack and submit a batch (feeder thread). False if nothing went to the cluster."""
        try:
            task_ref, digest = self._task_ref(batch.task)
        except SerializationError as exc:
            self._fail_all(batch, exc)
            return False
        refs: list[Any] = []
        slots: dict[int, int] = {}
        specs = [self._spec(c, refs, slots) for c in batch.calls or ()]
        c0, r0 = batch.calls[0], batch.runs[0]  # type: ignore[index]
        header = BatchHeader(batch.id, digest, c0.result_options, c0.flow_parameters, c0.log_prints,
                             c0.settings_env, r0.flow_run_id, r0.tags, self._id)
        try:
            payload = cloudpickle.dumps((header, specs), protocol=5)
        except Exception:
            specs = self._drop_unpicklable(batch, specs)
            if not specs:
                return False
            try:
                payload = cloudpickle.dumps((header, specs), protocol=5)
            except Exception as exc:
                self._fail_all(batch, SerializationError(
                    f"Task {batch.task.name!r} cannot be sent to a worker: its flow parameters or result options "
                    f"cannot be pickled ({exc!r})."))
                return False
        for run in batch.runs:
            self._live[run.id.int] = run
        try:
            self._backend_submit(batch, task_ref, payload, refs)
        except Exception as exc:
            self._crash(batch, f"could not be submitted to the cluster: {exc!r}", exc)
            return False
        return True

    def _spec(self, call: TaskCall, refs: list[Any], slots: dict[int, int]) -> CallSpec:
        run = call.task_run
        params = call.parameters
        linked = False
        if needs_resolution(params):
            def leaf(v: Any) -> Any:
                nonlocal linked
                if not isinstance(v, TaskRunFuture):
                    return v
                linked = True
                v.wait()
                st = v.state
                b = st.batch if isinstance(st, RemoteState) else None
                if b is not None and b.runner is self and b.ref is not None:
                    slot = slots.get(id(b))
                    if slot is None:
                        slot = slots[id(b)] = len(refs)
                        refs.append(b.ref)
                    return Upstream(slot, st.index, v.task_run.name)
                if isinstance(st, RemoteState):
                    st.result(raise_on_failure=False)  # a value on another runner's cluster comes along
                return Settled(v.task_run.name, st.copy())

            params = {k: map_nested(v, leaf) for k, v in params.items()}
        return (run.id.int, run.name, run.dynamic_key, run.run_count, params, linked)

    def _drop_unpicklable(self, batch: Batch, specs: list[CallSpec]) -> list[CallSpec]:
        """Fail the runs whose arguments cannot be pickled (naming the argument and its type); keep the rest."""
        keep: list[int] = []
        for i, spec in enumerate(specs):
            try:
                cloudpickle.dumps(spec, protocol=5)
                keep.append(i)
                continue
            except Exception as exc:
                culprit = "an argument"
                for name, value in batch.calls[i].parameters.items():  # type: ignore[index]
                    try:
                        cloudpickle.dumps(spec[4][name], protocol=5)
                    except Exception:
                        culprit = f"argument {name!r} (a value of type {type(value).__name__})"
                        break
                err = SerializationError(f"Task {batch.task.name!r} cannot be sent to a worker: {culprit} cannot "
                                         f"be pickled ({exc!r}). Pass something picklable, or use the thread "
                                         f"runner.")
                self._final_local(batch, i, S.Failed(message=str(err), data=err))
        batch.calls = [batch.calls[i] for i in keep]  # type: ignore[index]
        batch.runs = [batch.runs[i] for i in keep]
        batch.futures = [batch.futures[i] for i in keep]
        if not keep:
            with self._lock:
                self._open.discard(batch)
        return [specs[i] for i in keep]

    def _batch_finished(self, batch: Batch) -> None:
        """Backends call this (from any thread) when a batch's summary can be collected."""
        self._pump.finished(batch)

    def _settle(self, batches: list[Batch]) -> int:
        """Apply finished batches' outcomes (feeder thread); returns how many are still in flight after all."""
        try:
            results = self._backend_collect(batches)
        except Exception as exc:
            results = [exc] * len(batches)
        applied = []
        again = 0
        for batch, res in zip(batches, results):
            try:
                if res is None:
                    again += 1
                elif isinstance(res, BaseException):
                    if self._backend_worker_died(res):
                        self._lost(batch, f"{type(res).__name__}: {res}")
                    else:
                        self._crash(batch, f"could not run on the cluster: {res!r}", res)
                elif res.lost is not None:
                    self._lost(batch, res.lost)
                else:
                    self._apply(batch, res)
                    applied.append(batch)
            except Exception as exc:  # a bug here must not leave waiters hanging
                engine_logger("runners").exception("Applying the outcome of batch %s failed", batch.id)
                self._crash(batch, f"outcome could not be applied on the driver: {exc!r}", exc)
        if applied:
            try:
                self._backend_settled(applied)
            finally:
                self._backend_release([b for b in applied if b not in self._holding_set])
        return again

    def _apply(self, batch: Batch, summary: BatchSummary) -> None:
        states: list[RemoteState] = []
        holds_values = False
        for i, (run, entry) in enumerate(zip(batch.runs, summary.runs)):
            start_ts, end_ts, run_count, cache_key, history, has_value = entry
            last = history[-1]
            final = RemoteState(last.type, last.name, last.message, last.data, last.result_ref, last.ts)
            final.batch = batch if has_value else None
            final.index = i
            holds_values = holds_values or has_value
            history[-1] = final
            run.state_history.extend(history)
            run.state = final
            if run.start_ts is None:
                run.start_ts = start_ts
            run.end_ts, run.run_count, run.cache_key, run.worker = end_ts, run_count, cache_key, summary.worker
            self._live.pop(run.id.int, None)
            states.append(final)
        batch.states = states
        batch.calls = None
        with self._lock:
            self._open.discard(batch)
            if holds_values:
                self._holding.append(batch)
                self._holding_set.add(batch)
        for ref, st in zip(batch.futures, states):
            fut = ref()
            if fut is not None:
                fut.set_final(st)
        with self._lock:
            self._lock.notify_all()

    def _lost(self, batch: Batch, reason: str) -> None:
        try:
            self._resend_or_crash(batch, reason)
        finally:  # only now: the new batches are open already, so shutdown's wait cannot slip through
            with self._lock:
                self._open.discard(batch)
            self._backend_release([batch])

    def _resend_or_crash(self, batch: Batch, reason: str) -> None:
        calls = batch.calls or []
        if len(calls) > 1:
            engine_logger("runners").warning(
                "A worker died while running %d task runs of %r (%s); running them again one per cluster task to "
                "find the one that crashed.", len(calls), batch.task.name, reason)
            for call, ref in zip(calls, batch.futures):
                self._enqueue(Batch(self, [call], [ref]))
            return
        call = calls[0]
        run = call.task_run
        run.run_count += 1
        err = WorkerCrashedError(f"The worker running task run {run.name!r} died ({reason}).")
        crashed = S.Crashed(message=str(err), data=err)
        run.set_state(crashed)
        if run.run_count <= call.task.retries:
            run.set_state(S.AwaitingRetry(message=f"Worker died; retry {run.run_count} of {call.task.retries}."))
            self._enqueue(Batch(self, [call], batch.futures))
            return
        run.end_ts = crashed.ts
        self._finish(batch.futures[0], run, crashed)

    def _crash(self, batch: Batch, what: str, exc: BaseException) -> None:
        if batch.states is not None:  # already applied
            return
        for i, run in enumerate(list(batch.runs)):
            self._final_local(batch, i, S.Crashed(message=f"Task run {run.name!r} {what}", data=exc))
        with self._lock:
            self._open.discard(batch)

    def _fail_all(self, batch: Batch, exc: BaseException) -> None:
        for i in range(len(batch.runs)):
            self._final_local(batch, i, S.Failed(message=str(exc), data=exc))
        with self._lock:
            self._open.discard(batch)

    def _final_local(self, batch: Batch, i: int, state: State) -> None:
        run = batch.runs[i]
        run.set_state(state)
        run.end_ts = state.ts
        self._finish(batch.futures[i], run, state)

    def _finish(self, ref: weakref.ref, run: TaskRun, state: State) -> None:
        self._live.pop(run.id.int, None)
        fut = ref()
        if fut is not None:
            fut.set_final(state)
        with self._lock:
            self._lock.notify_all()

    def _live_state(self, run_id: int, state: State) -> None:
        run = self._live.get(run_id)
        if run is not None and not state.is_final() and not run.state.is_final():
            run.state = state

    def _drain(self) -> None:
        """Wait for every submitted run; then fetch the values that futures still referenced will want."""
        with self._lock:
            while self._open:
                if not self._pump.alive():
                    break
                self._lock.wait(0.5)
            wanted = [b for b in self._holding if not b.fetched and any(r() is not None for r in b.futures)]
        if wanted:
            try:
                self.fetch_values(wanted)
            except MissingResult as exc:
                engine_logger("runners").warning("%s", exc)

    def _abandon(self, why: str) -> None:
        with self._lock:
            left = list(self._open)
            self._open.clear()
        for batch in left:
            for i, run in enumerate(batch.runs):
                if not run.state.is_final():
                    self._final_local(batch, i, S.Crashed(message=f"Task run {run.name!r}: {why}."))

    def fetch_values(self, batches: Sequence[Batch]) -> None:
        """Bring the values of settled batches to the driver (each batch once)."""
        with self._fetch_lock:
            todo = [b for b in batches if not b.fetched]
            if not todo:
                return
            if self._closed:
                raise MissingResult(f"The values of task {todo[0].task.name!r} were kept on the cluster, which "
                                    f"released them when the flow run ended. Call .result() inside the flow, keep "
                                    f"the future until the flow returns, or persist results (persist_result=True).")
            results = self._backend_fetch(todo)
            failed = []
            for b, res in zip(todo, results):
                if isinstance(res, BaseException) or res.lost is not None:
                    failed.append((b, res))
                    continue
                for st, remote in zip(b.states or (), res.states):
                    if st.batch is b and st.data is S.UNSET:
                        st.data = remote.data
                b.fetched = True
        if failed:
            b, res = failed[0]
            cause = res if isinstance(res, BaseException) else None
            why = repr(res) if cause is not None else f"the worker holding them died ({res.lost})"
            raise MissingResult(f"The values of {len(b.runs)} task run(s) of {b.task.name!r} (batch {b.id}) "
                                f"could not be fetched from the cluster: {why}") from cause


__all__ = ["RemoteTaskRunner"]
