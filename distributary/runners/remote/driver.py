"""The driver side of the remote protocol: `RemoteTaskRunner` (packing, gating on upstream futures, the bounded
feeder, outcomes applied through the transition seam, worker-death policy), its futures and batches.
A backend implements the hooks of `backend.RemoteBackend`.
"""
from __future__ import annotations

import hashlib
import itertools
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Sequence
from functools import partial
from typing import Any

import cloudpickle

from ... import states as S
from ...engine import TaskCall, core, transitions
from ...engine.fanout import allowed as fanout_allowed
from ...engine.futures import FutureList, SettableFuture, TaskRunFuture
from ...engine.gcpause import gc_paused
from ...engine.resolve import find_upstreams, map_nested, needs_resolution
from ...engine.spec import HasTaskSpec, TaskSpec
from ...errors import ConfigurationError, MissingResult, SerializationError, WorkerCrashedError
from ...logging import engine_logger
from ...runs import TaskRun
from ...states import State, StateType
from ..base import TaskRunner, gate
from .backend import RemoteBackend
from .batching import COMPACT_MAX_BATCH, choose_batch_size
from .fanout import FanoutFutureList, FanRef, RemoteFanout
from .telemetry import TelemetryReceiver
from .worker import BatchHeader, BatchResult, BatchSummary, CallSpec, FanoutSpec, Settled, Upstream, pack_batch

_THREADS_TTL = 5.0
NO_WORKERS_WARN_AFTER = 10.0  # seconds with runs waiting and no worker before a WARNING (then every minute)


class RemoteState(State):
    """A final state whose value may still be on the cluster; `result()` fetches it (with its whole batch)."""

    __slots__ = ("batch", "index")
    batch: Batch | None  # where the value is, while it is still on the cluster
    index: int  # this run's place in its batch

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

    __slots__ = ("live",)

    def __init__(self, task_run: Any):
        super().__init__(task_run)
        self.live: State | None = None  # the latest live state from worker telemetry (display only)

    @property
    def state(self) -> State:
        s = self._final
        if s is not None:
            return s
        live = self.live
        return live if live is not None else self.task_run.state

    @classmethod
    def fetch_many(cls, futures: Sequence[TaskRunFuture], timeout: float | None = None) -> None:
        """Wait for `futures` and fetch the values they still lack, each batch once, in one request per runner."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for f in futures:  # all of them RemoteFutures
            if f._final is None:  # type: ignore[attr-defined]
                f.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        by_runner: dict[int, tuple[RemoteTaskRunner, dict[int, Batch]]] = {}
        last = None
        for f in futures:
            st = f._final  # type: ignore[attr-defined]
            b = st.batch if type(st) is RemoteState else None
            if b is None or b is last or st.data is not S.UNSET:  # a batch's runs come together: seen it
                continue
            last = b
            by_runner.setdefault(id(b.runner), (b.runner, {}))[1][id(b)] = b
        for runner, batches in by_runner.values():
            runner.fetch_values(list(batches.values()))

    def __reduce__(self) -> tuple:
        raise TypeError(f"the future of task run {self.task_run.name!r} cannot be sent to a worker as such; pass "
                        f"it as a task argument (not inside quote()) so it resolves to its value")


class Batch:
    """Task runs of one task sent together as one cluster task, and, once done, where their values are.

    A batch of a compact `.map()` (`fan` set, made by `compact`) holds no record, call or future of its runs: it is
    the runs `lo` to `lo + n` of its fan-out, and once settled the plain way (`settled_compact`) their start and end
    times and, once fetched, their values. Reading `runs`, `futures` or `calls` makes it ordinary (`degrade`)."""

    __slots__ = ("id", "runner", "spec", "_calls", "_template", "_params", "_runs", "_futures", "ref", "summary_ref",
                 "_states", "fetched", "sent_at", "queued", "after_done", "early", "fan", "lo", "n", "starts", "ends",
                 "worker", "values", "settled_compact", "__weakref__")

    def __init__(self, runner: RemoteTaskRunner, calls: Sequence[TaskCall],
                 futures: Sequence[Any]):
        self.id = f"{runner._id[:8]}-{next(runner._counter)}"
        self.runner = runner
        self.spec: TaskSpec = calls[0].spec
        self._calls: list[TaskCall] | None = list(calls)
        self._template: TaskCall | None = None  # once sent (`lighten`): what its calls share, and their arguments
        self._params: list[dict[str, Any]] | None = None
        self._runs: list[TaskRun] | None = [c.task_run for c in calls]
        self._futures: list[Any] | None = list(futures)  # weak references (or FanRefs) to the runs' futures
        self.ref: Any = None          # the backend's handle to this batch's BatchResult
        self.summary_ref: Any = None  # the backend's handle to its BatchSummary, if separate
        self._states: list[RemoteState] | None = None
        self.fetched = False
        self.sent_at: float | None = None  # monotonic time it went to the cluster
        self.queued = False      # passed its gate: in the feeder's queue (sent in order) or sent
        self.after_done = False  # gate on every upstream being done (no linking to unfinished ones)
        self.early = False       # sent linked to an upstream batch that had not finished yet
        self.fan: RemoteFanout | None = None
        self.lo = self.n = 0
        self.starts: Any = None
        self.ends: Any = None
        self.worker: str | None = None
        self.values: list[Any] | None = None
        self.settled_compact = False

    @classmethod
    def compact(cls, runner: RemoteTaskRunner, fan: RemoteFanout, lo: int, n: int) -> Batch:
        """Runs `lo` to `lo + n` of a compact `.map()`."""
        self = cls.__new__(cls)
        self.id = f"{runner._id[:8]}-{next(runner._counter)}"
        self.runner, self.spec = runner, fan.spec
        self._calls = self._template = self._params = self._runs = self._futures = self._states = None
        self.ref = self.summary_ref = self.sent_at = None
        self.fetched = self.queued = self.after_done = self.early = self.settled_compact = False
        self.fan, self.lo, self.n = fan, lo, n
        self.starts = self.ends = self.worker = self.values = None
        return self

    @property
    def compact_now(self) -> bool:
        """Still compact: no record, call or future of its runs held (see the class docstring)."""
        return self._runs is None

    def degrade(self) -> None:
        """Make a compact batch ordinary: a record, a call and a FanRef per run (before it settled)."""
        fan = self.fan
        assert fan is not None
        with fan.lock:
            if self._runs is not None:
                return
            idx = range(self.lo, self.lo + self.n)
            self._calls = [fan.call(i) for i in idx]
            self._runs = [c.task_run for c in self._calls]
            self._futures = [FanRef(fan, i) for i in idx]
            fan.cond.notify_all()
        runner = self.runner
        if runner._backend_links_unfinished:
            for j, run in enumerate(self._runs):
                runner._where[run.id_int] = (self, j)

    @property
    def context(self) -> Any:
        """The contextvars of the `.submit()` or `.map()` that made its runs (None if it has none)."""
        if self._runs is None:
            return self.fan.context  # type: ignore[union-attr]
        calls = self._calls if self._calls is not None else [self._template] if self._template is not None else None
        return calls[0].context if calls else None

    @property
    def size(self) -> int:
        return self.n if self._runs is None else len(self._runs)

    @property
    def runs(self) -> list[TaskRun]:
        if self._runs is None:
            self.degrade()
        return self._runs  # type: ignore[return-value]

    @runs.setter
    def runs(self, runs: list[TaskRun]) -> None:
        self._runs = runs

    @property
    def futures(self) -> list[Any]:
        if self._runs is None:
            self.degrade()
        return self._futures  # type: ignore[return-value]

    @futures.setter
    def futures(self, futures: list[Any]) -> None:
        self._futures = futures

    @property
    def states(self) -> list[RemoteState] | None:
        """The runs' final states once settled (made on first reading for a batch settled compactly)."""
        if self._states is None and self.settled_compact:
            new, values, UNSET = RemoteState.__new__, self.values, S.UNSET  # noqa: N806 (a local)
            out: list[RemoteState] = []
            for j, end_ts in enumerate(self.ends):
                st = new(RemoteState)
                st.type, st.name, st.message, st.ts, st.result_ref = StateType.COMPLETED, "Completed", None, end_ts, None
                st.data = UNSET if values is None else values[j]
                st.batch, st.index = self, j
                out.append(st)
            self._states = out
        return self._states

    @states.setter
    def states(self, states: list[RemoteState] | None) -> None:
        self._states = states

    @property
    def settled(self) -> bool:
        return self._states is not None or self.settled_compact

    def compact_states(self, j: int) -> tuple[State, RemoteState]:
        """(Running, final) of run `j` of a batch settled compactly."""
        running = State.__new__(State)
        running.type, running.name, running.message, running.ts, running.data, running.result_ref = \
            StateType.RUNNING, "Running", None, self.starts[j], S.UNSET, None
        return running, self.states[j]  # type: ignore[index]

    @property
    def calls(self) -> list[TaskCall] | None:
        """The batch's calls (None once applied). A sent batch keeps only what they share and their arguments
        (`lighten`); its calls are made again if it must be sent again (a worker died with it)."""
        if self._runs is None:
            self.degrade()
        if self._calls is None and self._template is not None:
            t, params = self._template, self._params or []
            return [TaskCall(t.spec, run, p, t.wait_for, t.result_options, t.flow_parameters, t.log_prints,
                             t.settings_env, t.context) for run, p in zip(self.runs, params)]
        return self._calls

    @calls.setter
    def calls(self, calls: list[TaskCall] | None) -> None:
        self._calls, self._template, self._params = calls, None, None

    def lighten(self) -> None:
        """Drop the per-run call objects of a sent batch whose calls come from one `.map()` (one context: the same
        options) and have not run on the driver: about 100 bytes per run while the batch is on the cluster."""
        calls = self._calls
        if not calls or len(calls) < 2:
            return
        t = calls[0]
        ctx, unset = t.context, S.UNSET
        if all(c.context is ctx and c.returned is unset for c in calls):
            self._template, self._params, self._calls = t, [c.parameters for c in calls], None

    def wanted(self) -> bool:
        """Whether a future of its runs (or the future list of its compact `.map()`) still lives."""
        if self._runs is None:
            return self.fan.wanted()  # type: ignore[union-attr]
        return any(r() is not None or (type(r) is FanRef and r.fan.wanted()) for r in self._futures or ())

    def fetch_values(self) -> None:
        self.runner.fetch_values([self])



class _Feeder:
    """The one driver thread that sends ready batches (at most `limit` in flight) and applies finished ones."""

    def __init__(self, runner: RemoteTaskRunner):
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

    def settled(self, n: int) -> None:
        """`n` in-flight batches were applied outside the feeder (by a backend's own thread)."""
        with self.cond:
            self.in_flight -= n
            self.cond.notify()

    def finished(self, batch: Batch) -> None:
        with self.cond:
            self.done_q.append(batch)
            self.cond.notify()

    def alive(self) -> bool:
        return self.thread.is_alive()

    def stop(self, wait: bool = True) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify()
        if wait and threading.current_thread() is not self.thread:
            self.thread.join(10)

    def _loop(self) -> None:
        r = self.runner
        while True:
            limit = r._in_flight_limit()
            idle = False
            with self.cond:
                while not (self.stopping or self.done_q or (self.ready_q and self.in_flight < limit)):
                    if not self.cond.wait(1.0) and self.in_flight and not self.done_q:
                        idle = True  # a quiet second with batches out: look at the workers (outside the lock)
                        break
                    # The cached count only: counting asks the cluster, whose I/O thread may be waiting for
                    # this lock (to report a finished batch), so it must not happen while the lock is held.
                    limit = r._in_flight_limit(refresh=False)
                if self.stopping:
                    return
                done, self.done_q = self.done_q, []
                send = [self.ready_q.popleft() for _ in range(min(len(self.ready_q), max(0, limit - self.in_flight)))]
                self.in_flight += len(send) - len(done)
            try:
                if idle:
                    r._watch_workers()
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



class RemoteTaskRunner(RemoteBackend["Batch"], TaskRunner):
    """Driver side of a remote runner: batches, gating on upstream futures, the feeder, outcomes, worker death.

    A backend subclasses it and implements the hooks of `RemoteBackend` (remote/backend.py).
    """

    _compact_maps = True  # a backend whose outcomes arrive one by one (with their values) sets False

    def __init__(self, batch_size: int | None = None, max_in_flight: int | None = None):
        super().__init__()
        for name, v in (("batch_size", batch_size), ("max_in_flight", max_in_flight)):
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ConfigurationError(f"{type(self).__name__}: {name} must be a whole number >= 1 or None, "
                                         f"got {v!r}.")
        self.batch_size = batch_size
        self.max_in_flight = max_in_flight

    # -- TaskRunner -------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._id = uuid.uuid4().hex
        self._counter = itertools.count()
        self._receiver = TelemetryReceiver(self._id, self._live_state)
        self._tasks: dict[int, tuple[Any, str, Any]] = {}
        self._headers: dict[tuple, tuple] = {}
        self._live: dict[int, weakref.ref] = {}
        self._where: dict[int, tuple[Batch, int]] = {}  # run -> its batch and place, while not final (linking)
        self._fanouts: dict[int, RemoteFanout] = {}  # compact .map()s by their batch id (`_where_of`, telemetry)
        self._open: set[Batch] = set()
        self._holding: list[Batch] = []  # settled batches whose values are still on the cluster
        self._holding_set: set[Batch] = set()
        self._lock = threading.Condition()
        self._fetch_lock = threading.Lock()
        self._closed = False
        self._threads_at = (-1e9, 1)
        self._no_workers: tuple[float, float] | None = None  # (since, last warned) while the cluster has none
        self._cluster_lost = 0          # runs crashed because the cluster itself went away
        self._cluster_lost_logged = 0   # how many of them the one ERROR line counted
        self._gone: str | None = None   # why the whole cluster is gone, once the backend said so (_lose_cluster)
        self._connect()
        self._pump = _Feeder(self)

    def shutdown(self) -> None:
        try:
            self._drain()
        finally:
            # A lost cluster may hold the feeder in a call to it; what it still does is ignored (nothing is open).
            self._pump.stop(wait=self._gone is None)
            self._abandon("the task runner shut down before the run finished")
            if self._cluster_lost > self._cluster_lost_logged:
                engine_logger("runners").error("In all, %d task run(s) on %r crashed because the cluster was lost.",
                                               self._cluster_lost, self.name)
            self._closed = True
            try:
                self._backend_release(self._holding)
            finally:
                self._holding = []
                self._holding_set = set()
                self._tasks = {}
                self._where = {}
                self._fanouts = {}
                self._disconnect()

    def cancel_all(self, reason: str) -> None:
        """Every run not finished ends Cancelled now; the backend stops those already on the cluster
        (`_backend_cancel`); outcomes that still arrive for them are ignored, and nothing more is sent."""
        with self._lock:
            left = list(self._open)
        self._stop_batches(left, lambda run, b: S.Cancelled(message=f"Task run {run.name!r} was cancelled: "
                                                                   f"{reason}."), f"were cancelled: {reason}")

    def _stop_batches(self, batches: list[Batch], state_of: Any, what: str) -> None:
        """End the unfinished runs of `batches` with `state_of(run, batch)` and stop them on the cluster; their
        outcomes, if any still arrive, are ignored (the batches are no longer open)."""
        with self._lock:
            batches = [b for b in batches if b in self._open]
            self._open.difference_update(batches)
        if not batches:
            return
        try:
            self._backend_cancel(batches)
        except Exception as exc:  # the runs end on the driver all the same
            engine_logger("runners").warning("Could not stop the task runs on %r: %r", self, exc)
        stopped = 0
        for batch in batches:
            for i, run in enumerate(batch.runs):
                if not run.state.is_final():
                    stopped += 1
                    self._final_local(batch, i, state_of(run, batch))
        if stopped:
            engine_logger("runners").warning("%d task run(s) on %r %s.", stopped, self.name, what)

    def submit_call(self, call: TaskCall) -> RemoteFuture:
        return self.submit_calls([call])[0]

    def _map(self, task: HasTaskSpec, static: dict[str, Any], mapped: dict[str, list[Any]], n: int,
             wait_for: Any) -> FutureList:
        """As every runner's; where nothing watches each run (`engine.fanout.allowed`), the runs stay compact from
        the `.map()` to their values (`remote/fanout.py`)."""
        if not (self._compact_maps and fanout_allowed(task, static, mapped, n, wait_for)):
            return super()._map(task, static, mapped, n, wait_for)
        size = choose_batch_size(n, self._threads(), self.batch_size, cap=COMPACT_MAX_BATCH)
        fan = RemoteFanout(self, RemoteFuture, task, static, mapped, n, size)
        fan.batches = [Batch.compact(self, fan, lo, min(size, n - lo)) for lo in range(0, n, size)]
        futures = FanoutFutureList(fan)
        fan.list_ref = weakref.ref(futures)
        self._fanouts[fan.base] = fan
        transitions.fanout_created(fan)
        for batch in fan.batches:
            self._enqueue(batch)
        return futures

    def submit_calls(self, calls: Sequence[TaskCall]) -> list[RemoteFuture]:
        with gc_paused():  # 10^5 futures and weak references are no garbage while they are made
            futures = [RemoteFuture(c.task_run) for c in calls]
            refs = [weakref.ref(f) for f in futures]
        n = len(calls)
        size = 1 if n == 1 else choose_batch_size(n, self._threads(), self.batch_size)
        for i in range(0, n, size):
            self._enqueue(Batch(self, calls[i:i + size], refs[i:i + size]))
        return futures

    # -- driver internals -------------------------------------------------------------------------------------
    def _threads(self) -> int:
        """Worker threads of the cluster (at least 1), counted at most every `_THREADS_TTL` seconds."""
        at, n = self._threads_at
        now = time.monotonic()
        if now - at > _THREADS_TTL:
            try:
                n = self._backend_threads()
            except Exception as exc:  # keep the last known number; the cluster may be busy or scaling
                engine_logger("runners").debug("Could not count worker threads: %r", exc)
            self._threads_at = (now, n)
        return max(1, n)

    def _watch_workers(self) -> None:
        """Feeder thread, about once a second while batches are on the cluster: a cluster without workers runs
        nothing and says nothing. Warn (naming the cluster) after NO_WORKERS_WARN_AFTER seconds, then every
        minute; a run whose task has `timeout_seconds` and that could not start within it ends TimedOut."""
        self._threads()
        now = time.monotonic()
        if self._threads_at[1] > 0:
            self._no_workers = None
            return
        since, warned = self._no_workers or (now, 0.0)
        self._no_workers = (since, warned)
        with self._lock:
            waiting = [b for b in self._open if b.sent_at is not None]
        if now - since >= NO_WORKERS_WARN_AFTER and now - warned >= 60.0:
            self._no_workers = (since, now)
            engine_logger("runners").warning(
                "%s has no workers: %d task run(s) have been waiting for %.0f s. Start workers for it (or check "
                "that they can reach it); runs with timeout_seconds end TimedOut, a flow's timeout_seconds ends "
                "the flow.", self._backend_where(), sum(b.size for b in waiting), now - since)
        late = [b for b in waiting if b.spec.timeout_seconds
                and now - max(since, b.sent_at or now) >= b.spec.timeout_seconds]
        if late:
            self._stop_batches(late, lambda run, b: S.TimedOut(
                message=f"Task run {run.name!r} could not start within its timeout of {b.spec.timeout_seconds} "
                        f"seconds: {self._backend_where()} has no workers."), "timed out waiting for a worker")

    def _in_flight_limit(self, refresh: bool = True) -> int:
        return self.max_in_flight or max(16, 4 * (self._threads() if refresh else max(1, self._threads_at[1])))

    def _enqueue(self, batch: Batch) -> None:
        with self._lock:
            self._open.add(batch)
        if batch.compact_now:  # a compact .map(): no futures among its arguments
            self._ready(batch)
            return
        where = self._where
        if self._backend_links_unfinished:
            for i, run in enumerate(batch.runs):
                where[run.id_int] = (batch, i)
        link = self._backend_links_unfinished and not batch.after_done
        deps: dict[int, TaskRunFuture] = {}
        for c in batch.calls or ():
            if c.wait_for or needs_resolution(c.parameters):
                linked = self._linkable_upstreams(c.parameters) if link else ()
                for d in find_upstreams(c.parameters, None):
                    if not d.done() and id(d) not in linked:
                        deps[id(d)] = d
                for d in find_upstreams({}, c.wait_for):  # wait_for: the run starts once they are done
                    if not d.done():
                        deps[id(d)] = d
        if deps:
            gate(list(deps.values()), lambda: self._ready(batch))
        else:
            self._ready(batch)

    def _ready(self, batch: Batch) -> None:
        batch.queued = True
        self._pump.ready(batch)

    def _linkable_upstreams(self, params: dict[str, Any]) -> set[int]:
        """The unfinished upstream futures (by id) among `params`' leaves that this runner can link to on the
        cluster: their batch passed its gate already, so the feeder (in order) sends it before this one."""
        out: set[int] = set()

        def see(v: Any) -> Any:
            if isinstance(v, TaskRunFuture) and not v.done():
                w = self._where_of(v.task_run)
                if w is not None and w[0].queued and w[0].runner is self:
                    out.add(id(v))
            return v

        for v in params.values():
            map_nested(v, see)
        return out

    def _where_of(self, run: TaskRun) -> tuple[Batch, int] | None:
        """The batch of this runner that holds `run` (not settled yet), and the run's place in it."""
        w = self._where.get(run.id_int)
        if w is not None:
            return w if w[0].runs[w[1]] is run else None
        fan = self._fanouts.get(run.id_int >> 32 << 32)
        if fan is None:
            return None
        i = run.id_int - fan.base
        if not 0 <= i < fan.n or fan._runs.get(i) is not run:
            return None
        b, j = fan.batch_of(i)
        return (b, j) if b.compact_now and not b.settled_compact else None

    def _task_ref(self, task: TaskSpec) -> tuple[Any, str]:
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
        if batch not in self._open:  # cancelled while it waited
            return False
        if self._gone is not None:  # e.g. a resend after the cluster was lost: it has nowhere to go
            with self._lock:
                self._open.discard(batch)
            self._crash_unfinished([batch], self._gone)
            return False
        try:
            task_ref, digest = self._task_ref(batch.spec)
        except SerializationError as exc:
            self._fail_all(batch, exc)
            return False
        if batch.compact_now:
            sent = self._send_compact(batch, task_ref, digest)
            if sent is not None:
                return sent
            batch.degrade()  # an argument cannot be pickled: find which, the ordinary way
        refs: list[Any] = []
        slots: dict[int, int] = {}
        try:
            specs = [self._spec(batch, c, refs, slots) for c in batch.calls or ()]
        except _NotSent:  # an upstream it was to be linked to went back to the queue: wait for it to finish
            self._defer(batch)
            return False
        c0, r0 = batch.calls[0], batch.runs[0]  # type: ignore[index]
        try:
            header = self._header(digest, c0.result_options, c0.flow_parameters, c0.log_prints, c0.settings_env,
                                  r0.flow_run_id, r0.tags)
        except Exception as exc:
            self._fail_all(batch, SerializationError(
                f"Task {batch.spec.name!r} cannot be sent to a worker: its flow parameters or result options "
                f"cannot be pickled ({exc!r})."))
            return False
        try:
            payload = pack_batch(batch.id, header, specs)
        except Exception:
            specs = self._drop_unpicklable(batch, specs)
            if not specs:
                return False
            payload = pack_batch(batch.id, header, specs)
        for run, ref in zip(batch.runs, batch.futures):
            self._live[run.id_int] = ref
        batch.sent_at = time.monotonic()
        try:
            self._backend_submit(batch, task_ref, payload, refs)
        except Exception as exc:
            self._crash(batch, f"could not be submitted to the cluster: {exc!r}", exc)
            return False
        batch.lighten()
        return True

    def _send_compact(self, batch: Batch, task_ref: Any, digest: str) -> bool | None:
        """Pack a compact batch from its fan-out's columns and submit it; None if its arguments cannot be pickled
        (the caller then sends it the ordinary way, which finds the culprits)."""
        fan = batch.fan
        assert fan is not None
        try:
            header = self._header(digest, fan.result_options, fan.flow_parameters, fan.log_prints, fan.settings_env,
                                  fan.flow_run_id, fan.tags)
        except Exception as exc:
            self._fail_all(batch, SerializationError(
                f"Task {batch.spec.name!r} cannot be sent to a worker: its flow parameters or result options "
                f"cannot be pickled ({exc!r})."))
            return False
        lo, hi = batch.lo, batch.lo + batch.n
        try:
            payload = pack_batch(batch.id, header, FanoutSpec(fan.base + lo, fan.key0 + lo, fan.static,
                                                              {k: col[lo:hi] for k, col in fan.mapped.items()}))
        except Exception:
            return None
        batch.sent_at = time.monotonic()
        try:
            self._backend_submit(batch, task_ref, payload, [])
        except Exception as exc:
            self._crash(batch, f"could not be submitted to the cluster: {exc!r}", exc)
            return False
        return True

    def _header(self, digest: str, result_options: Any, flow_parameters: dict[str, Any], log_prints: bool,
                settings_env: dict[str, str] | None, flow_run_id: Any, tags: frozenset[str]) -> bytes:
        """The pickled BatchHeader shared by the batches of one task in one flow run (pickled once)."""
        key = (digest, id(result_options), id(flow_parameters), log_prints, id(settings_env), flow_run_id, tags)
        hit = self._headers.get(key)
        if hit is not None and hit[1] is result_options and hit[2] is flow_parameters and hit[3] is settings_env:
            return hit[0]
        data = cloudpickle.dumps(BatchHeader("", digest, result_options, flow_parameters, log_prints, settings_env,
                                             flow_run_id, tags, self._id), protocol=5)
        if len(self._headers) >= 64:
            self._headers.clear()
        self._headers[key] = (data, result_options, flow_parameters, settings_env)
        return data

    def _spec(self, batch: Batch, call: TaskCall, refs: list[Any], slots: dict[int, int]) -> CallSpec:
        run = call.task_run
        params = call.parameters
        linked = False
        if needs_resolution(params):
            def leaf(v: Any) -> Any:
                nonlocal linked
                if not isinstance(v, TaskRunFuture):
                    return v
                linked = True
                if not v.done():  # passed _enqueue's gate unfinished: linked to its batch on the cluster
                    w = self._where_of(v.task_run)
                    b = w[0] if w is not None else None
                    if b is None or b.ref is None or b.runner is not self or b not in self._open:
                        raise _NotSent(v.task_run.name)
                    slot = slots.get(id(b))
                    if slot is None:
                        slot = slots[id(b)] = len(refs)
                        refs.append(b.ref)
                    batch.early = True
                    return Upstream(slot, w[1], v.task_run.name)  # type: ignore[index]
                v.wait()
                st = v.state
                b = st.batch if isinstance(st, RemoteState) else None
                if isinstance(st, RemoteState) and b is not None and b.runner is self and b.ref is not None:
                    slot = slots.get(id(b))
                    if slot is None:
                        slot = slots[id(b)] = len(refs)
                        refs.append(b.ref)
                    return Upstream(slot, st.index, v.task_run.name)
                if isinstance(st, RemoteState):
                    st.result(raise_on_failure=False)  # a value on another runner's cluster comes along
                return Settled(v.task_run.name, st.copy())

            params = {k: map_nested(v, leaf) for k, v in params.items()}
        return (run.id_int, run._name, run.dynamic_key, run.run_count, params, linked)  # (None: the default name)

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
                err = SerializationError(f"Task {batch.spec.name!r} cannot be sent to a worker: {culprit} cannot "
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

    def _settle_here(self, batch: Batch) -> None:
        """Backends with a thread of their own per connection may apply a finished batch in that thread (one
        thread hop less per run than `_batch_finished`); its summary must be collectable already."""
        again = self._settle([batch])
        if again:
            self._pump.finished(batch)
        else:
            self._pump.settled(1)

    def _settle(self, batches: list[Batch]) -> int:
        """Apply finished batches' outcomes (feeder thread); returns how many are still in flight after all."""
        with gc_paused():  # two states per run, and the summaries: no garbage among them
            return self._settle_now(batches)

    def _settle_now(self, batches: list[Batch]) -> int:
        try:
            results = self._backend_collect(batches)
        except Exception as exc:
            results = [exc] * len(batches)
        applied = []
        again = 0
        crashed: dict[str, int] = {}  # why -> runs: one ERROR line per cause, not one per batch
        for batch, res in zip(batches, results):
            if batch not in self._open:  # cancelled (cancel_all): its outcome no longer counts
                self._backend_release([batch])
                continue
            try:
                if res is None:
                    again += 1
                elif batch.early and (isinstance(res, BaseException) and self._backend_cluster_lost(res) is None
                                      or not isinstance(res, BaseException) and res.deferred):
                    # An upstream it was linked to did not end as the cluster ran it (lost with its worker,
                    # or an error of the cluster's): run it again once the driver has settled its upstreams.
                    self._defer(batch)
                elif isinstance(res, BaseException):
                    if self._backend_worker_died(res):
                        worker = self._backend_dead_worker(batch)  # may take seconds (Ray asks its GCS)
                        if batch in self._open:  # not ended meanwhile (cancelled, or the cluster lost)
                            self._lost(batch, f"{type(res).__name__}: {res}", worker=worker)
                    else:
                        gone = self._backend_cluster_lost(res)
                        why = f"crashed: {gone}" if gone else f"could not run on the cluster: {res!r}"
                        crashed[why] = crashed.get(why, 0) + self._crash(batch, why, res)
                        if gone:
                            self._cluster_lost += len(batch.runs)
                elif res.lost is not None:
                    self._lost(batch, res.lost, res)
                elif batch.compact_now and not any(res.runs):  # every run went the plain way
                    self._apply_compact(batch, res)
                    applied.append(batch)
                else:
                    self._apply(batch, res)
                    applied.append(batch)
            except Exception as exc:  # a bug here must not leave waiters hanging
                engine_logger("runners").exception("Applying the outcome of batch %s failed", batch.id)
                self._crash(batch, f"outcome could not be applied on the driver: {exc!r}", exc)
        if crashed:
            self._log_crashes(crashed)
        if applied:
            try:
                self._backend_settled(applied)
            finally:
                self._backend_release([b for b in applied if b not in self._holding_set])
        return again

    def _apply(self, batch: Batch, summary: BatchSummary) -> None:
        states: list[RemoteState] = []
        holds_values = False
        worker = summary.worker
        starts, ends = summary.starts, summary.ends
        applied: list[tuple[TaskRun, Sequence[State]]] = []
        live = self._live
        where_pop = self._where.pop
        # The compact entries' states, built without the constructor's checks (10^5 of them per .map()).
        new_remote, new_state = partial(RemoteState.__new__, RemoteState), partial(State.__new__, State)
        COMPLETED, RUNNING, UNSET = StateType.COMPLETED, StateType.RUNNING, S.UNSET  # noqa: N806 (locals)
        for i, (run, entry) in enumerate(zip(batch.runs, summary.runs)):
            if entry is None:  # the compact form: Running, then Completed with its value on the worker
                start_ts = starts[i]  # type: ignore[index]
                end_ts = ends[i]  # type: ignore[index]
                final = new_remote()
                final.type, final.name, final.message, final.ts, final.data, final.result_ref = \
                    COMPLETED, "Completed", None, end_ts, UNSET, None
                final.batch = batch
                final.index = i
                holds_values = True
                running = new_state()
                running.type, running.name, running.message, running.ts, running.data, running.result_ref = \
                    RUNNING, "Running", None, start_ts, UNSET, None
                applied.append((run, (running, final)))
                if run.start_ts is None:
                    run.start_ts = start_ts
                run.end_ts, run.run_count, run.worker = end_ts, run.run_count + 1, worker
                live.pop(run.id_int, None)
                where_pop(run.id_int, None)
                states.append(final)
                continue
            start_ts, end_ts, run_count, cache_key, history, has_value = entry
            last = history[-1]
            final = RemoteState(last.type, last.name, last.message, last.data, last.result_ref, last.ts)
            final.batch = batch if has_value else None
            final.index = i
            holds_values = holds_values or has_value
            history[-1] = final
            applied.append((run, history))
            if run.start_ts is None:
                run.start_ts = start_ts
            run.end_ts, run.run_count, run.cache_key, run.worker = end_ts, run_count, cache_key, worker
            live.pop(run.id_int, None)
            where_pop(run.id_int, None)
            states.append(final)
        transitions.set_states_many(applied)  # the batch's states in one run event (bulk inserts downstream)
        batch.states = states
        batch.calls = None
        with self._lock:
            self._open.discard(batch)
            if holds_values:
                self._holding.append(batch)
                self._holding_set.add(batch)
        SettableFuture.set_final_many((fut, st) for ref, st in zip(batch.futures, states) if (fut := ref()) is not None)
        with self._lock:
            self._lock.notify_all()

    def _apply_compact(self, batch: Batch, summary: BatchSummary) -> None:
        """Settle a compact batch whose runs all went the plain way: keep their times; records and futures made
        meanwhile take their states as `_apply` gives them."""
        fan = batch.fan
        assert fan is not None
        with fan.lock:
            batch.starts, batch.ends, batch.worker = summary.starts, summary.ends, summary.worker
            batch.settled_compact = True
            made = fan.made(batch.lo, batch.lo + batch.n)
            futures = [(f, i) for i, _ in made if (f := fan._futures.get(i)) is not None]
            fan.cond.notify_all()
        transitions.fanout_settled(fan, batch.lo, batch.starts, batch.ends)
        if made:
            lo, states = batch.lo, batch.states
            applied: list[tuple[TaskRun, Sequence[State]]] = []
            for i, run in made:
                running, final = batch.compact_states(i - lo)
                applied.append((run, (running, final)))
                if run.start_ts is None:
                    run.start_ts = running.ts
                run.end_ts, run.run_count, run.worker = final.ts, run.run_count + 1, batch.worker
            transitions.set_states_told(applied)  # (the fanout_settled event above told the sinks)
            SettableFuture.set_final_many((f, states[i - lo]) for f, i in futures)  # type: ignore[index]
        with self._lock:
            self._open.discard(batch)
            self._holding.append(batch)
            self._holding_set.add(batch)
            self._lock.notify_all()

    def _defer(self, batch: Batch) -> None:
        """Send the batch's runs again (a new batch, no attempt used) once all their upstreams are done."""
        with self._lock:
            self._open.discard(batch)
        self._backend_release([batch])
        again = Batch(self, batch.calls or [], batch.futures)
        again.after_done = True
        self._enqueue(again)

    def _lost(self, batch: Batch, reason: str, summary: BatchSummary | None = None,
              worker: str | None = None) -> None:
        try:
            if summary is not None and summary.running is not None:
                self._partly_lost(batch, reason, summary)
            else:
                self._resend_or_crash(batch, reason, summary.worker if summary is not None else worker)
        finally:  # only now: the new batches are open already, so shutdown's wait cannot slip through
            with self._lock:
                self._open.discard(batch)
            self._backend_release([batch])

    def _partly_lost(self, batch: Batch, reason: str, summary: BatchSummary) -> None:
        """The worker died with this batch; `summary.runs` finished before. Keep those, charge an attempt to the
        run that was running (if one was), send the rest again without using a retry."""
        calls = batch.calls or []
        k = min(len(summary.runs), len(calls))
        if k:
            self._apply(Batch(self, calls[:k], batch.futures[:k]), summary.head(k))
        rest = k
        if summary.running and k < len(calls):
            self._charge(calls[k], batch.futures[k], reason, summary.worker)
            rest = k + 1
        if rest < len(calls):
            self._enqueue(Batch(self, calls[rest:], batch.futures[rest:]))

    def _resend_or_crash(self, batch: Batch, reason: str, worker: str | None = None) -> None:
        calls = batch.calls or []
        if len(calls) > 1:
            engine_logger("runners").warning(
                "A worker%s died while running %d task runs of %r (%s); running them again one per cluster task to "
                "find the one that crashed.", f" ({worker})" if worker else "", len(calls), batch.spec.name, reason)
            for call, ref in zip(calls, batch.futures):
                self._enqueue(Batch(self, [call], [ref]))
            return
        self._charge(calls[0], batch.futures[0], reason, worker)

    def _charge(self, call: TaskCall, ref: weakref.ref, reason: str, worker: str | None) -> None:
        """The worker running this run died: one attempt used; retried if it has retries left, else Crashed.
        Logged at ERROR once, naming the worker."""
        run = call.task_run
        run.run_count += 1
        where = f" on {worker}" if worker and worker not in reason else ""
        err = WorkerCrashedError(f"The worker running task run {run.name!r}{where} died ({reason}).")
        crashed = S.Crashed(message=str(err), data=err)
        transitions.set_state(run, crashed)
        retries = call.spec.retries
        if core.should_retry(retries, run.run_count, crashed, None):  # re-sent at once, on another worker
            engine_logger("runners").error("Task run %r crashed: its worker died while running it%s (%s); retry %d "
                                           "of %d.", run.name, where, reason, run.run_count, retries)
            transitions.set_state(run, S.AwaitingRetry(message=f"Worker died; retry {run.run_count} of {retries}."))
            self._enqueue(Batch(self, [call], [ref]))
            return
        engine_logger("runners").error("Task run %r crashed: its worker died while running it%s (%s).", run.name,
                                       where, reason)
        run.end_ts = crashed.ts
        self._finish(ref, run, crashed)

    def _crash(self, batch: Batch, what: str, exc: BaseException) -> int:
        """End the batch's runs Crashed (`what` completes "Task run 'x' ..."); how many."""
        if batch.settled:  # already applied
            return 0
        for i, run in enumerate(list(batch.runs)):
            self._final_local(batch, i, S.Crashed(message=f"Task run {run.name!r} {what}", data=exc))
        with self._lock:
            self._open.discard(batch)
        return len(batch.runs)

    def _log_crashes(self, crashed: dict[str, int]) -> None:
        """ERROR once per cause; a lost cluster once for the whole run (shutdown adds the final count)."""
        log = engine_logger("runners")
        for why, n in crashed.items():
            if why.startswith("crashed: ") and self._cluster_lost:
                if self._cluster_lost_logged:
                    continue
                self._cluster_lost_logged = self._cluster_lost
            log.error("%d task run(s) on %r %s.", n, self.name, why)

    def _fail_all(self, batch: Batch, exc: BaseException) -> None:
        for i in range(len(batch.runs)):
            self._final_local(batch, i, S.Failed(message=str(exc), data=exc))
        with self._lock:
            self._open.discard(batch)

    def _final_local(self, batch: Batch, i: int, state: State) -> None:
        run = batch.runs[i]
        transitions.set_state(run, state)
        run.end_ts = state.ts
        self._finish(batch.futures[i], run, state)

    def _finish(self, ref: weakref.ref, run: TaskRun, state: State) -> None:
        self._live.pop(run.id_int, None)
        self._where.pop(run.id_int, None)
        fut = ref()
        if fut is not None:
            fut.set_final(state)
        with self._lock:
            self._lock.notify_all()

    def _live_state(self, run_id: int, state: State) -> None:
        # Display only: shown on `future.state` until the run's history arrives with its batch (see the package
        # docstring); it never enters the history nor the run events.
        ref = self._live.get(run_id)
        if ref is None:  # a run of a compact .map(): shown only if its future was made
            fan = self._fanouts.get(run_id >> 32 << 32)
            fut = fan._futures.get(run_id - fan.base) if fan is not None else None
        else:
            fut = ref()
        if fut is not None and not state.is_final() and not fut.done():
            fut.live = state

    def _drain(self) -> None:
        """Wait for every submitted run; then fetch the values that futures still referenced will want."""
        with self._lock:
            while self._open:
                if not self._pump.alive():
                    break
                self._lock.wait(0.5)
            wanted = [b for b in self._holding if not b.fetched and b.wanted()]
        if wanted:
            try:
                self.fetch_values(wanted)
            except MissingResult as exc:
                engine_logger("runners").warning("%s", exc)

    def _lose_cluster(self, why: str) -> None:
        """Backends call this (from any thread) when the whole cluster is gone for good and its own clients
        would not say so in time (Ray's lost head): every unfinished run ends Crashed now, with one ERROR line
        (`why` completes "... ended Crashed: "); runs sent later end the same way, without reaching it."""
        self._gone = why
        self._abandon(why)

    def _abandon(self, why: str) -> None:
        with self._lock:
            left = list(self._open)
            self._open.clear()
        crashed = self._crash_unfinished(left, why)
        if crashed:
            engine_logger("runners").error("%d task run(s) of %r ended Crashed: %s.", crashed, self.name, why)

    def _crash_unfinished(self, batches: list[Batch], why: str) -> int:
        """End the runs of `batches` (no longer open) that are not final Crashed with `why`; how many."""
        crashed = 0
        for batch in batches:
            for i, run in enumerate(batch.runs):
                if not run.state.is_final():
                    crashed += 1
                    self._final_local(batch, i, S.Crashed(message=f"Task run {run.name!r}: {why}."))
        return crashed

    def fetch_values(self, batches: Sequence[Batch]) -> None:
        """Bring the values of settled batches to the driver (each batch once)."""
        with self._fetch_lock:
            todo = [b for b in batches if not b.fetched]
            if not todo:
                return
            if self._closed:
                raise MissingResult(f"The values of task {todo[0].spec.name!r} were kept on the cluster, which "
                                    f"released them when the flow run ended. Call .result() inside the flow, keep "
                                    f"the future until the flow returns, or persist results (persist_result=True).")
            with gc_paused():  # the values of whole batches, unpickled: no garbage among them
                results = self._backend_fetch(todo)
            failed: list[tuple[Batch, Any]] = []
            for b, res in zip(todo, results):
                if isinstance(res, BaseException) or res.lost is not None:
                    failed.append((b, res))
                    continue
                differs = None if b.compact_now and res.same_times(b.ends) else _rerun_check(b, res)
                if differs:
                    failed.append((b, differs))
                    continue
                if b.compact_now:
                    b.values = res.values()
                    for st, v in zip(b._states or (), b.values):
                        st.data = v
                else:
                    for st, remote in zip(b.states or (), res.outcomes()):
                        if st.batch is b and st.data is S.UNSET:
                            st.data = remote[0]
                b.fetched = True
        if failed:
            b, res = failed[0]
            cause = res if isinstance(res, BaseException) else None
            if cause is not None:
                why = repr(res)
            elif isinstance(res, str):
                why = res
            else:
                why = f"the worker holding them died ({res.lost})"
            raise MissingResult(f"The values of {b.size} task run(s) of {b.spec.name!r} (batch {b.id}) "
                                f"could not be fetched from the cluster: {why}") from cause


class _NotSent(Exception):
    """An unfinished upstream's batch is not on the cluster (any more): the downstream cannot link to it."""


def _rerun_check(batch: Batch, res: BatchResult) -> str | None:
    """Values that come from a re-execution (the cluster computed the batch again after the worker holding its
    values died; its states carry other timestamps) are counted and logged at WARNING; they are accepted only if
    every run ended the same way as the outcome the driver already applied. Returns why they are refused."""
    mine = list(batch.states or ())
    theirs = res.outcomes()  # (data, ts, type, name) each
    if not theirs or all(a.ts == b[1] for a, b in zip(mine, theirs)):
        return None
    rerun = sum(1 for a, b in zip(mine, theirs) if a.ts != b[1])
    changed = [(a, b) for a, b in zip(mine, theirs) if a.type is not b[2] or a.name != b[3]]
    log = engine_logger("runners")
    if not changed:
        log.warning("%d task run(s) of %r (batch %s) were run again by the cluster after the worker holding their "
                    "values died; they ended the same way, so their values are used.", rerun, batch.spec.name,
                    batch.id)
        return None
    a, b = changed[0]
    why = (f"the cluster ran them again after the worker holding their values died, and {len(changed)} of them "
           f"ended differently (e.g. {a.name} before, {b[3]} now); the values of the re-execution are refused")
    log.warning("%d task run(s) of %r (batch %s): %s.", rerun, batch.spec.name, batch.id, why)
    return why


__all__ = ["RemoteTaskRunner"]
