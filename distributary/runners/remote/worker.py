"""Worker side of the remote protocol: run a batch of task runs with the engine, keep their final states where
they were computed, and report live states through telemetry. No dask or ray in here.
"""
from __future__ import annotations

import collections
import pickle
import threading
import time
import uuid
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import cloudpickle

from ... import settings
from ... import states as S
from ...context import TaskRunContext, task_run_ctx
from ...engine import TaskCall, core, run_call, transitions
from ...engine.futures import TaskRunFuture
from ...engine.resolve import map_nested, needs_resolution
from ...engine.spec import TaskSpec
from ...engine.tag_limits import has_limits
from ...errors import SerializationError
from ...logging import engine_logger, reset_log_prints, set_log_prints
from ...runs import FINISHED, STATE_CHANGED, TaskRun
from ...states import State
from .telemetry import TelemetrySender, _channel, install_log_forwarding, telemetry_sender

# One call of a batch, as shipped: (run id as int, run name or None for the default one, dynamic key, run count so
# far, parameters, linked).
# `linked` says the parameters hold Upstream/Settled placeholders to replace before the run.
CallSpec = tuple

class BatchHeader:
    """What every task run of a batch shares: they come from one `.submit()` or `.map()` in one flow run."""

    __slots__ = ("batch_id", "task_digest", "result_options", "flow_parameters", "log_prints", "settings_env",
                 "flow_run_id", "tags", "channel")

    def __init__(self, batch_id: str, task_digest: str, result_options: Any, flow_parameters: dict[str, Any],
                 log_prints: bool, settings_env: dict[str, str] | None, flow_run_id: uuid.UUID | None,
                 tags: frozenset[str], channel: str | None):
        self.batch_id = batch_id
        self.task_digest = task_digest
        self.result_options = result_options
        self.flow_parameters = flow_parameters
        self.log_prints = log_prints
        self.settings_env = settings_env
        self.flow_run_id = flow_run_id
        self.tags = tags
        self.channel = channel


class Upstream:
    """Placeholder for the value of a task run computed by another batch: `upstreams[slot].states[index]`.
    The backend passes that batch's result as a native dependency, so the value moves worker to worker."""

    __slots__ = ("slot", "index", "name")

    def __init__(self, slot: int, index: int, name: str):
        self.slot, self.index, self.name = slot, index, name

    def __reduce__(self) -> tuple:
        return (Upstream, (self.slot, self.index, self.name))


class Settled:
    """Placeholder for an upstream whose final state the driver already holds (it did not complete, its value
    was persisted, or it ran on another runner)."""

    __slots__ = ("name", "state")

    def __init__(self, name: str, state: State):
        self.name, self.state = name, state

    def __reduce__(self) -> tuple:
        return (Settled, (self.name, self.state))


class _Named:
    __slots__ = ("name", "id")

    def __init__(self, name: str):
        self.name = name
        self.id = None


class SettledFuture(TaskRunFuture):
    """What the engine sees on the worker in place of an upstream future: already done, with its final state.
    The engine's own resolution then applies (not completed -> NotReady, `allow_failure` -> the exception)."""

    __slots__ = ("_state",)
    task_run: Any  # a _Named: the engine reads only its name (in messages about the upstream)

    def __init__(self, name: str, state: State):
        self.task_run = _Named(name)
        self._state = state

    @property
    def state(self) -> State:
        return self._state

    def done(self) -> bool:
        return True

    def wait(self, timeout: float | None = None) -> None:
        return None

    def add_done_callback(self, fn: Callable[[TaskRunFuture], Any]) -> None:
        fn(self)


class BatchSummary:
    """What the driver needs of a finished batch, without the values: per task run
    `(start_ts, end_ts, run_count, cache_key, new_states, has_value)` where `new_states` are the states the run
    went through on the worker (values dropped, exceptions kept) and `has_value` says the final state holds a
    value on the worker. `lost` is set instead when the batch could not run (its previous attempt's worker died).

    Compact form (the common case of a packed batch): `runs[i]` is None for a run that went the plain way,
    Running at `starts[i]` then Completed (with its value on the worker) at `ends[i]` in its first attempt, with
    no cache key; the two arrays carry its times and nothing else is shipped for it. `entry(i)` gives any run's
    full entry, building the states of a compact one on demand."""

    __slots__ = ("batch_id", "worker", "runs", "lost", "running", "starts", "ends", "deferred")

    def __init__(self, batch_id: str, worker: str | None, runs: Sequence[tuple | None], lost: str | None = None,
                 running: bool | None = None, starts: array | None = None, ends: array | None = None,
                 deferred: bool = False):
        self.batch_id, self.worker, self.runs, self.lost = batch_id, worker, runs, lost
        self.deferred = deferred  # not run: an upstream it was linked to came back lost (see run_batch)
        # With `lost`: `runs` are the runs that finished before the worker died, and `running` says whether the
        # next run had started (None: not known, as on Dask and Ray).
        self.running = running
        self.starts, self.ends = starts, ends

    def entry(self, i: int) -> tuple:
        """The full entry of run `i` (see the class docstring)."""
        e = self.runs[i]
        if e is not None:
            return e
        start, end = self.starts[i], self.ends[i]  # type: ignore[index]
        return (start, end, 1, None, [S.Running(timestamp=start), S.Completed(timestamp=end)], True)

    def head(self, k: int) -> BatchSummary:
        """The summary of the first `k` runs only."""
        cut = None if self.starts is None else (self.starts[:k], self.ends[:k])  # type: ignore[index]
        return BatchSummary(self.batch_id, self.worker, self.runs[:k], None, None, *(cut or (None, None)))


class BatchResult:
    """The outcome of a batch, kept on the worker that computed it: one final state (with its value) per task
    run, in call order. Downstream batches receive it as a dependency; the driver fetches it on `.result()`.
    Once its summary was taken, the summary no longer travels when the result is pickled.

    It travels compactly: a plain Completed state as its value and its time (in an array), any other state as
    it is. Where it arrives, `states` are built on first use; `outcomes()` reads them without building them."""

    __slots__ = ("batch_id", "_states", "_packed", "summary", "lost", "_taken")

    def __init__(self, batch_id: str, states: list[State], summary: BatchSummary | None,
                 lost: str | None = None):
        self.batch_id, self.summary, self.lost = batch_id, summary, lost
        self._states: list[State] | None = states
        self._packed: tuple[list[Any], array, dict[int, State]] | None = None
        self._taken = False

    @classmethod
    def packed(cls, batch_id: str, values: list[Any], times: array, others: dict[int, State],
               summary: BatchSummary | None) -> BatchResult:
        """A result made in its travelling form: run i's final state is `others[i]` if there is one, else
        Completed with `values[i]` at `times[i]` (what the tight loop produces, no State per run)."""
        self = cls.__new__(cls)
        self.batch_id, self.summary, self.lost = batch_id, summary, None
        self._states, self._packed, self._taken = None, (values, times, others), False
        return self

    @property
    def states(self) -> list[State]:
        if self._states is None:
            values, times, others = self._packed  # type: ignore[misc]
            self._states = [others[i] if i in others else _completed(v, t)
                            for i, (v, t) in enumerate(zip(values, times))]
            self._packed = None
        return self._states

    def outcomes(self) -> list[tuple[Any, float, S.StateType, str]]:
        """(data, ts, type, name) of each run's final state, in call order."""
        if self._states is not None:
            return [(st.data, st.ts, st.type, st.name) for st in self._states]
        values, times, others = self._packed  # type: ignore[misc]
        out = [(v, t, _COMPLETED, "Completed") for v, t in zip(values, times)]
        for i, st in others.items():
            out[i] = (st.data, st.ts, st.type, st.name)
        return out

    def values(self) -> list[Any]:
        """Each run's value (its final state's data), in call order."""
        packed = self._packed
        if packed is not None and not packed[2]:
            return packed[0]
        return [o[0] for o in self.outcomes()]

    def same_times(self, ends: Any) -> bool:
        """Whether every run ended at `ends[i]` (not a re-execution, see `driver._rerun_check`): a quick check
        that holds for results of the plain loop."""
        packed = self._packed
        return packed is not None and not packed[2] and packed[1] == ends

    def __getstate__(self) -> tuple:
        packed = self._packed
        if packed is None:
            values: list[Any] = []
            times = array("d")
            others: dict[int, State] = {}
            for i, st in enumerate(self._states or ()):
                if st.type is _COMPLETED and st.result_ref is None and st.message is None \
                        and st.name == "Completed" and type(st) is State:
                    values.append(st.data)
                    times.append(st.ts)
                else:
                    values.append(None)
                    times.append(0.0)
                    others[i] = st
            packed = (values, times, others)
        return (self.batch_id, *packed, None if self._taken else self.summary, self.lost)

    def __setstate__(self, state: tuple) -> None:
        self.batch_id, values, times, others, self.summary, self.lost = state
        self._packed, self._states = (values, times, others), None
        self._taken = False

    @classmethod
    def lost_batch(cls, batch_id: str, reason: str, worker: str | None = None) -> BatchResult:
        """The result of a batch that must not run again here (its worker died mid-run); the driver decides."""
        return cls(batch_id, [], BatchSummary(batch_id, worker, [], reason), reason)

    @classmethod
    def deferred_batch(cls, batch_id: str, reason: str, worker: str | None = None) -> BatchResult:
        """The result of a batch not run because an upstream batch it was linked to came back lost; the driver
        sends it again once that upstream has settled."""
        return cls(batch_id, [], BatchSummary(batch_id, worker, [], reason, deferred=True), reason)

    def take_summary(self) -> BatchSummary:
        """The summary (for the driver); fetching the values later then does not ship it again."""
        summary = self.summary
        if summary is None:
            raise RuntimeError(f"Batch {self.batch_id} arrived here without its summary, which was already "
                               f"taken where it was computed.")
        self._taken = True
        return summary

    def split(self) -> tuple[BatchResult, BatchSummary]:
        """(result without summary, summary): for backends that return both as separate objects."""
        summary = self.take_summary()
        self.summary = None
        return self, summary


_COMPLETED = S.StateType.COMPLETED


def _completed(value: Any, ts: float) -> State:
    """Completed(data=value) at `ts`, built without the constructor's checks (unpickling many at once)."""
    st = State.__new__(State)
    st.type, st.name, st.message, st.ts, st.data, st.result_ref = _COMPLETED, "Completed", None, ts, value, None
    return st


# ---------------------------------------------------------------------------------------------------------------
# The task definition: shipped once per runner, unpickled once per worker process
# ---------------------------------------------------------------------------------------------------------------
_TASKS: collections.OrderedDict[str, TaskSpec] = collections.OrderedDict()
_TASKS_MAX = 256
_tasks_lock = threading.Lock()


def load_task(digest: str, payload: bytes) -> TaskSpec:
    """The task spec pickled in `payload`, unpickled once per process and then taken from a cache by `digest`."""
    with _tasks_lock:
        task = _TASKS.get(digest)
        if task is not None:
            _TASKS.move_to_end(digest)
            return task
    task = cloudpickle.loads(payload)
    with _tasks_lock:
        _TASKS[digest] = task
        while len(_TASKS) > _TASKS_MAX:
            _TASKS.popitem(last=False)
    return task


# ---------------------------------------------------------------------------------------------------------------
# Running a batch
# ---------------------------------------------------------------------------------------------------------------
_HEADERS: dict[bytes, BatchHeader] = {}


class FanoutSpec(NamedTuple):
    """The calls of a batch of a compact `.map()` (`engine.fanout`), as columns: run i has id `base + i`, run number
    `key0 + i` and the parameters `static` plus the i-th element of each list in `mapped`."""
    base: int
    key0: int
    static: dict[str, Any]
    mapped: dict[str, list[Any]]

    def __len__(self) -> int:  # type: ignore[override]
        return len(next(iter(self.mapped.values())))

    def specs(self) -> Iterator[CallSpec]:
        """The calls one by one: made as they run, each gone once it has run. (A list of them all, made first,
        would be thousands of objects that live through young collections, and in a worker holding many objects
        the full collections they then cause cost more than running the batch.)"""
        base, key0, static, mapped = self
        if len(mapped) == 1:
            ((name, col),) = mapped.items()
            if not static:
                return ((base + i, None, key0 + i, 0, {name: v}, False) for i, v in enumerate(col))
            return ((base + i, None, key0 + i, 0, {**static, name: v}, False) for i, v in enumerate(col))
        names = list(mapped)
        return ((base + i, None, key0 + i, 0, {**static, **dict(zip(names, row))}, False)
                for i, row in enumerate(zip(*mapped.values())))


def calls_of(specs: list[CallSpec] | FanoutSpec) -> Iterable[CallSpec]:
    """The calls of an unpacked batch, one by one."""
    if isinstance(specs, FanoutSpec):
        return specs.specs()
    return specs


def pack_batch(batch_id: str, header: bytes, specs: list[CallSpec] | FanoutSpec) -> bytes:
    """A batch as shipped: its id, its pickled header (the same bytes for every batch of one task in one flow
    run, so workers unpickle it once) and its calls. Raises if a call's arguments cannot be pickled."""
    return cloudpickle.dumps((batch_id, header, specs), protocol=5)


def unpack_batch(payload: bytes) -> tuple[str, BatchHeader, list[CallSpec] | FanoutSpec]:
    """(batch id, header, calls) of a batch made by `pack_batch`; headers are cached per process. The calls of a
    compact `.map()`'s batch come as their FanoutSpec (`specs()` makes them)."""
    batch_id, data, specs = pickle.loads(payload)
    header = _HEADERS.get(data)
    if header is None:
        header = pickle.loads(data)
        if len(_HEADERS) >= 64:
            _HEADERS.clear()
        _HEADERS[data] = header
    return batch_id, header, specs


def run_batch(task_payload: bytes, batch_payload: bytes, upstreams: Sequence[BatchResult] = (),
              worker: str | None = None, defer_lost: bool = False) -> BatchResult:
    """Run every call of a batch in this thread with `engine.run_call`; never raises.

    Each task run keeps its own states, retries, cache lookups, persistence and hooks; a failing run only fails
    itself. `upstreams` are the results of the batches whose values the calls' Upstream placeholders point at.
    With `defer_lost` (the batch was linked to upstream batches before they finished), nothing runs if one of
    them came back lost: the driver decides that upstream's fate first, then sends the batch again.
    """
    batch_id, header, specs = unpack_batch(batch_payload)
    if defer_lost:
        lost = next((u.lost for u in upstreams if u.lost is not None), None)
        if lost is not None:
            return BatchResult.deferred_batch(batch_id, f"an upstream batch was lost ({lost})", worker)
    task = load_task(header.task_digest, task_payload)
    sender = telemetry_sender() if header.channel else None
    token = _channel.set(header.channel) if sender is not None else None
    if sender is not None:
        install_log_forwarding()
        watch_live_states()
    n = len(specs)
    calls = calls_of(specs)
    values: list[Any] = [None] * n  # the result travels packed (see BatchResult): values, times, other states
    others: dict[int, State] = {}
    entries: list[tuple | None] = [None] * n
    starts, ends = array("d", bytes(8 * n)), array("d", bytes(8 * n))
    try:
        with settings.overlay(header.settings_env):  # settings travel as data: the process env is left alone
            plain = _plain_task(task, header)  # inside the overlay: tag limits are read from the run's store
            lp_token = set_log_prints(bool(header.log_prints)) if plain else None
            try:
                if plain:
                    run_plain_many(task, header, calls, upstreams, worker, sender, values, others, entries, starts,
                                   ends)
                else:
                    for i, spec in enumerate(calls):
                        others[i], entries[i] = run_one(task, header, spec, upstreams, worker, sender)
            finally:
                if lp_token is not None:
                    reset_log_prints(lp_token)
    finally:
        if token is not None:
            _channel.reset(token)
        if sender is not None:
            sender.flush(header.channel)  # this batch's log records leave before its outcome does
    summary = BatchSummary(batch_id, worker, entries, starts=starts, ends=ends)
    return BatchResult.packed(batch_id, values, ends, others, summary)


def _plain_task(task: TaskSpec, header: BatchHeader) -> bool:
    """Whether the task's runs may take the tight loop (`run_plain`): nothing of the engine's beyond one call,
    its states and its context applies to them (no result options, hooks, retries, timeout, async, or a tag
    with a concurrency limit, whose slot the engine's steps take)."""
    return (header.result_options is None and not task.isasync and not task.timeout_seconds
            and not task.retries and not (task.on_running or task.on_completion or task.on_failure
                                          or task.on_commit or task.on_rollback)
            and not has_limits(header.tags))


def run_plain(task: TaskSpec, header: BatchHeader, spec: CallSpec, worker: str | None,
              live: TelemetrySender | None) -> tuple[Any, tuple | None, float, float]:
    """One run of a plain task (`_plain_task`) without the engine's step machinery, with the same outcome:
    Running, then Completed with the value, or Failed with the exception (logged at ERROR as the engine does).
    The run's context is set, so `get_run_logger()` and `distributary.runtime` work in the task; its task-run
    record is made only if something asks for it. Returns (the value, None, start, end) for a run that completed
    with a sendable value (the compact form), else (its final state, its full entry, start, end). `live` is the
    telemetry sender of a batch with a channel: the run is its live Running state while it lasts."""
    values: list[Any] = [None]
    others: dict[int, State] = {}
    entries: list[tuple | None] = [None]
    starts, ends = array("d", [0.0]), array("d", [0.0])
    run_plain_many(task, header, [spec], (), worker, live, values, others, entries, starts, ends)
    if entries[0] is None:
        return values[0], None, starts[0], ends[0]
    return others[0], entries[0], starts[0], ends[0]


def run_plain_many(task: TaskSpec, header: BatchHeader, specs: Iterable[CallSpec], upstreams: Sequence[BatchResult],
                   worker: str | None, live: TelemetrySender | None, values: list[Any], others: dict[int, State],
                   entries: list[tuple | None], starts: array, ends: array) -> None:
    """`run_plain` for every call of a batch of a plain task, in one loop: run i's value goes to `values[i]` and
    its times to `starts[i]`, `ends[i]`; a run that did not complete with a sendable value puts its final state in
    `others[i]` and its full entry in `entries[i]`. A call with arguments to resolve goes through `run_one`."""
    invoke, now, set_ctx, reset_ctx, plain = task.invoke, time.time, task_run_ctx.set, task_run_ctx.reset, _PLAIN
    channel = header.channel
    shared = (task, header, worker, live)
    new_ctx, ctx_class = object.__new__, _PlainRunContext
    for i, spec in enumerate(specs):
        if spec[5] or needs_resolution(spec[4]):
            others[i], entries[i] = run_one(task, header, spec, upstreams, worker, live)
            continue
        start = now()
        if live is not None:
            live.running(channel, spec[0], start)  # type: ignore[arg-type]
        ctx = new_ctx(ctx_class)  # (what __init__ does, without its call: this loop's largest cost)
        ctx._batch = shared
        ctx._spec = spec
        ctx._start = start
        token = set_ctx(ctx)
        error: BaseException | None = None
        try:
            value = invoke(**spec[4])
        except BaseException as exc:  # noqa: BLE001 (the run's outcome, see _plain_outcome)
            value, error = None, exc
        reset_ctx(token)
        if live is not None:
            live.idle(channel)  # type: ignore[arg-type]
        if error is None and type(value) in plain:  # the common case: a value that can be sent
            values[i] = value
            starts[i] = start
            ends[i] = now()
            continue
        out, entry, end = _plain_outcome(task, ctx, value, error, start)
        starts[i], ends[i] = start, end
        if entry is None:
            values[i] = out
        else:
            others[i], entries[i] = out, entry


def _plain_outcome(task: TaskSpec, ctx: _PlainRunContext, value: Any, error: BaseException | None,
                   start: float) -> tuple[Any, tuple | None, float]:
    """How a plain run ended that raised `error` or returned a value of a type that is not a plain one (a
    generator is consumed and a returned state taken as the run's, in the run's context): (its value, None, end)
    if it completed with a value that can be sent, else (its final state, its full entry, end)."""
    final: State | None = None
    if error is None:
        token = task_run_ctx.set(ctx)
        try:
            if _is_generator(value):
                value = _consume_generator(value)
            final = core.state_from_return(value)
            if final is None and _unsendable(value) is not None:
                final = S.Completed(data=value)  # `_sendable` below fails the run, as the engine's path would
        except BaseException as exc:  # noqa: BLE001
            error = exc
        finally:
            task_run_ctx.reset(token)
        if final is None and error is None:
            return value, None, time.time()
    if isinstance(error, Exception):
        final = core.failed_state_for(error, ctx.task_run.name)
    elif error is not None:  # as run_one: the engine lets interrupts through, a batch's outcome never does
        final = S.Crashed(message=f"Task run {ctx.task_run.name!r} was interrupted on the worker by "
                                  f"{type(error).__name__}: {error}", data=error)
    assert final is not None
    end = time.time()
    run = ctx.task_run
    run.end_ts = end
    run.state_history = [run.state, final]
    run.state = final
    if final.is_failed() or final.is_crashed():
        engine_logger("task_runs").error("Task run %r finished in state %r", run.name, final,
                                         extra={"run_name": run.name})
    final = _sendable(final, run, task)
    has_value = final.is_completed() and final.data is not S.UNSET
    history = [s.without_data() for s in run.state_history]
    return final, (start, end, run.run_count, None, history, has_value), end


class _PlainRunContext(TaskRunContext):
    """The context of one run of the tight loop. Its task-run record (`task_run`) is made when first asked for
    (`get_run_logger()`, `distributary.runtime`, an artifact, a failure): most runs of a large map never need
    one."""

    # `_batch` is (task spec, header, worker, telemetry sender), the same for every run of the batch; the
    # context's other fields are read from it and from the call (`_spec`) when asked for (most runs never ask).
    # The record, once made, is `_run` (unset until then).
    __slots__ = ("_batch", "_spec", "_start", "_run")
    _batch: tuple[TaskSpec, BatchHeader, str | None, TelemetrySender | None]
    _spec: CallSpec
    _start: float
    _run: TaskRun

    def __init__(self, task: TaskSpec, header: BatchHeader, spec: CallSpec, worker: str | None, start: float,
                 live: TelemetrySender | None):
        self._batch = (task, header, worker, live)
        self._spec = spec
        self._start = start

    @property
    def task(self) -> Any:  # type: ignore[override]
        return self._batch[0].owner

    @property
    def parameters(self) -> dict[str, Any]:  # type: ignore[override]
        return self._spec[4]

    @property
    def flow_parameters(self) -> dict[str, Any]:  # type: ignore[override]
        return self._batch[1].flow_parameters

    @property
    def log_prints(self) -> bool:  # type: ignore[override]
        return bool(self._batch[1].log_prints)

    @property
    def result_options(self) -> Any:  # type: ignore[override]
        return None

    @property  # type: ignore[override]
    def task_run(self) -> TaskRun:
        try:
            return self._run
        except AttributeError:
            run = self._run = self._make_run()
            return run

    @task_run.setter
    def task_run(self, run: TaskRun) -> None:
        self._run = run  # type: ignore[assignment]

    def _make_run(self) -> _LiveTaskRun:
        task, header, worker, live = self._batch
        run_id, name, dynamic_key, run_count, params, _ = self._spec
        run = _LiveTaskRun(run_id, name, task.name, task.task_key, header.flow_run_id, params, header.tags,
                           S.Running(timestamp=self._start), dynamic_key)
        run.run_count = run_count + 1
        run.worker = worker
        run.start_ts = self._start
        run._live = (live, header.channel) if live is not None else None  # type: ignore[assignment]
        return run


def _is_generator(value: Any) -> bool:
    import inspect
    import types

    return isinstance(value, types.GeneratorType) or inspect.isasyncgen(value)


def _consume_generator(value: Any) -> list[Any]:
    from ...engine.steps import _consume

    out: list[Any] = _consume(value)
    return out


def run_one(task: TaskSpec, header: BatchHeader, spec: CallSpec, upstreams: Sequence[BatchResult],
             worker: str | None, sender: TelemetrySender | None) -> tuple[State, tuple]:
    run_id, name, dynamic_key, run_count, params, linked = spec
    if linked:
        params = link_upstreams(params, upstreams)
    run = _LiveTaskRun(uuid.UUID(int=run_id), name, task.name, task.task_key, header.flow_run_id, params,
                       header.tags, S.Pending(), dynamic_key)
    run.run_count = run_count
    run.worker = worker
    run._live = (sender, header.channel) if sender is not None and header.channel is not None else None
    call = TaskCall(task, run, params, None, header.result_options, header.flow_parameters, header.log_prints,
                    header.settings_env)
    try:
        state = run_call(call)
    except BaseException as exc:  # the engine lets interrupts through; a batch's outcome never raises
        state = S.Crashed(message=f"Task run {run.name!r} was interrupted on the worker by {type(exc).__name__}: "
                                  f"{exc}", data=exc)
        run.end_ts = time.time()
        run.set_state(state)
    finally:
        if sender is not None and header.channel is not None:  # a sender exists only for a batch with a channel
            sender.forget(header.channel, run_id)
    state = _sendable(state, run, task)
    has_value = state.is_completed() and state.data is not S.UNSET
    history = [s.without_data() for s in run.state_history[1:]]  # [0] is the worker's fresh Pending
    return state, (run.start_ts, run.end_ts, run.run_count, run.cache_key, history, has_value)


def link_upstreams(params: dict[str, Any], upstreams: Sequence[BatchResult]) -> dict[str, Any]:
    """Replace Upstream/Settled placeholders by done futures the engine resolves as usual."""

    def leaf(v: Any) -> Any:
        t = type(v)
        if t is Upstream:
            res = upstreams[v.slot]
            if res.lost is not None:
                state = S.Crashed(message=f"The value of upstream task run {v.name!r} was lost with its worker "
                                          f"({res.lost}).")
            else:
                state = res.states[v.index]
            return SettledFuture(v.name, state)
        if t is Settled:
            return SettledFuture(v.name, v.state)
        return v

    return {k: map_nested(v, leaf) for k, v in params.items()}


_PLAIN = frozenset({int, float, str, bool, type(None), bytes, complex})


def _discard(_: Any) -> None:
    return None


def _sendable(state: State, run: TaskRun, task: TaskSpec) -> State:
    """Fail the run now if its value or exception could never leave this worker (better than a transfer error
    later, far from the task)."""
    data = state.data
    if data is S.UNSET or type(data) in _PLAIN:
        return state
    exc = _unsendable(data)
    if exc is None:
        return state
    kind = "result" if state.is_completed() else "exception"
    err = SerializationError(
        f"Task run {run.name!r} of task {task.name!r} returned a {kind} of type {type(data).__name__} that "
        f"cannot be sent from the worker ({exc!r}). Return a picklable value, or persist it "
        f"(persist_result=True) and return a reference.")
    failed = S.Failed(message=str(err), data=err)
    run.state = failed
    run.state_history[-1] = failed
    return failed


def _unsendable(data: Any) -> Exception | None:
    """Why `data` cannot be pickled (None if it can). Out-of-band pickling (protocol 5) keeps this cheap for
    arrays."""
    try:
        try:
            pickle.dumps(data, protocol=5, buffer_callback=_discard)
        except Exception:
            cloudpickle.dumps(data, protocol=5, buffer_callback=_discard)
        return None
    except Exception as exc:
        return exc


class _LiveStates:
    """The worker process's run-event sink: state changes of the task runs running here (through the
    transition seam) go to the telemetry sender as live states."""

    kinds = frozenset({STATE_CHANGED, FINISHED})  # (a run's final state comes as FINISHED)

    def handle(self, events: Sequence[tuple]) -> None:
        for _, run, state in events:
            live = run._live if type(run) is _LiveTaskRun else None
            if live is not None:
                live[0].state(live[1], run.id_int, state)

    def flush(self, timeout: float | None = None) -> bool:
        return True  # nothing held: `handle` hands each state to the telemetry sender, which sends on its own

    def close(self) -> None:
        return None


_live_sink: _LiveStates | None = None


def watch_live_states() -> None:
    """Ship the live states of task runs in this process to the driver (idempotent; backends call it before
    running batches with telemetry)."""
    global _live_sink
    if _live_sink is None:
        with _tasks_lock:
            if _live_sink is None:
                _live_sink = _LiveStates()
                transitions.add_sink(_live_sink)


class _LiveTaskRun(TaskRun):
    """A task run on a worker that reports its state changes to the telemetry sender."""

    __slots__ = ("_live",)
    _live: tuple[TelemetrySender, str] | None  # where its live states go (the sender, the batch's channel)

    def set_state(self, state: State) -> None:
        super().set_state(state)
        live = self._live
        if live is not None:
            live[0].state(live[1], self.id_int, state)



__all__ = ["CallSpec", "BatchHeader", "Upstream", "Settled", "SettledFuture", "BatchSummary", "BatchResult",
           "load_task", "run_batch", "run_one", "run_plain", "run_plain_many", "link_upstreams", "pack_batch", "unpack_batch", "calls_of", "watch_live_states"]
