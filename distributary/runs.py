"""Records of flow runs and task runs, and the run events every observer of runs reads.

A run's state changes only in `distributary.engine.transitions`, which appends to the record's history and
emits a `RunEvent` to the registered `RunEventSink`s (batched, off the hot path). The in-memory recorder kept
here is one such sink; the run store is another.
"""
from __future__ import annotations

import datetime as _dt
import itertools
import random
import threading
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .states import State

# ---------------------------------------------------------------------------------------------------------------
# Run events: (kind, run, payload) tuples, cheap to make on the hot path
# ---------------------------------------------------------------------------------------------------------------
FLOW_RUN_CREATED = "flow_run_created"    # (kind, FlowRun, None)
TASK_RUNS_CREATED = "task_runs_created"  # (kind, None, list[TaskRun]): a .map() arrives as one event
STATE_CHANGED = "state_changed"          # (kind, TaskRun | FlowRun, State): already appended to the history
LOG = "log"                              # (kind, None, dict): see `distributary.logging.record_to_dict`
RUN_FINISHED = "run_finished"            # (kind, TaskRun | FlowRun, final State)
ARTIFACT = "artifact"                    # (kind, None, dict): an artifact created inside or outside a run
EVENT_KINDS = frozenset({FLOW_RUN_CREATED, TASK_RUNS_CREATED, STATE_CHANGED, LOG, RUN_FINISHED, ARTIFACT})
# The bulk form of STATE_CHANGED: (kind, None, list[(TaskRun | FlowRun, Sequence[State])]), the states many runs
# went through (already appended to their histories, in order), e.g. one cluster batch's outcome. Only a sink
# that names it in `kinds` receives it (and then no STATE_CHANGED events for those states: one bulk insert per
# batch); every other sink that wants STATE_CHANGED gets the same states as one STATE_CHANGED event each.
STATES_CHANGED = "states_changed"
# A run's final state and its end at once: (kind, TaskRun | FlowRun, final State), the same as STATE_CHANGED then
# RUN_FINISHED with that state (one event instead of two per run of a large .map()). Only a sink that names it in
# `kinds` receives it; every other sink gets those two events, as far as it wants them.
FINISHED = "finished"
# The runs of a compact `.map()` (`engine.fanout.Fanout`, see there; only sinks that name these kinds receive them,
# and a .map() is kept compact only where every sink watching task runs names them, `transitions.task_runs_watched`):
# FANOUT_CREATED (kind, None, fan-out): its runs, created Pending; FANOUT_SETTLED (kind, None, (fan-out, lo,
# starts, ends)): its runs lo, lo + 1, ... ran Running at starts[i] then Completed at ends[i], with no record made
# (runs of it that have a record, or did not end that way, come as the usual events of their records).
FANOUT_CREATED = "fanout_created"
FANOUT_SETTLED = "fanout_settled"
FANOUT_KINDS = frozenset({FANOUT_CREATED, FANOUT_SETTLED})

RunEvent = tuple[str, Any, Any]  # (kind, run: TaskRun | FlowRun | None, payload)


class RunEventSink(Protocol):
    """Receives run events in batches, in the order they happened, from the dispatcher thread (never from a
    task's thread). `kinds` names the event kinds it wants (None: all). `handle` must return quickly (a sink
    that does I/O queues the work on its own writer) and should not raise; one that raises is logged.
    `flush(timeout)` writes out what the sink holds, waiting at most `timeout` seconds, and returns whether
    everything was written; `close()` releases the sink."""

    @property
    def kinds(self) -> frozenset[str] | None: ...

    def handle(self, events: Sequence[RunEvent]) -> None: ...

    def flush(self, timeout: float | None = None) -> bool: ...

    def close(self) -> object: ...


def _dt_or_none(ts: float | None) -> _dt.datetime | None:
    return None if ts is None else _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc)


class TaskRun:
    """One run of a task: id, name, parameters, tags, times and the state history."""

    __slots__ = ("_id", "_name", "task_name", "task_key", "flow_run_id", "parameters", "tags", "start_ts",
                 "end_ts", "state", "state_history", "run_count", "cache_key", "dynamic_key", "worker", "abandoned",
                 "task_inputs")

    def __init__(self, id: uuid.UUID | int, name: str | None, task_name: str, task_key: str,
                 flow_run_id: uuid.UUID | None, parameters: dict[str, Any], tags: frozenset[str], state: State,
                 dynamic_key: int = 0):
        # The id may come as the UUID's 128-bit int (a `.map()` derives its runs' ids from one batch id, see
        # `batch_run_ids`); the UUID object is made on first read. A name of None is the default name,
        # "<task name>-<dynamic key>", made when read. Both keep a large fan-out's records small and cheap.
        self._id = id
        self._name = name
        self.task_name = task_name
        self.task_key = task_key
        self.flow_run_id = flow_run_id
        self.parameters = parameters
        self.tags = tags
        self.start_ts: float | None = None
        self.end_ts: float | None = None
        self.state = state
        self.state_history = [state]
        self.run_count = 0
        self.cache_key: str | None = None
        self.dynamic_key = dynamic_key
        self.worker: str | None = None
        self.abandoned = False  # given up while still executing: its late states are refused (transitions)
        # Prefect's task_inputs, {parameter: [{"input_type": "task_run", "id": ...}]}: the upstream task runs
        # (engine.resolve.task_inputs); None when no parameter came from another task run
        self.task_inputs: dict[str, list[dict[str, str]]] | None = None

    @property
    def id(self) -> uuid.UUID:
        v = self._id
        if v.__class__ is int:
            v = self._id = uuid_from_int(v)  # two threads racing here make equal UUIDs: harmless
        return v  # type: ignore[return-value]

    @id.setter
    def id(self, value: uuid.UUID) -> None:
        self._id = value

    @property
    def id_int(self) -> int:
        """The id as its 128-bit int, without making the UUID object (a cluster runner's hot path keys on it)."""
        v = self._id
        return v if v.__class__ is int else v.int  # type: ignore[return-value, union-attr]

    @property
    def name(self) -> str:
        n = self._name
        return n if n is not None else f"{self.task_name}-{self.dynamic_key}"

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    def set_state(self, state: State) -> None:
        """Kept for callers not yet converted: goes through `distributary.engine.transitions.set_state`."""
        _set_state(self, state)

    @property
    def start_time(self) -> _dt.datetime | None:
        return _dt_or_none(self.start_ts)

    @property
    def end_time(self) -> _dt.datetime | None:
        return _dt_or_none(self.end_ts)

    def update_from(self, other: TaskRun) -> None:
        """Take over what a worker recorded for this run (its copy came back with the outcome)."""
        for name in ("start_ts", "end_ts", "state", "state_history", "run_count", "cache_key", "worker"):
            setattr(self, name, getattr(other, name))

    def __repr__(self) -> str:
        return f"TaskRun(name={self.name!r}, state={self.state!r})"


_BATCH_SPAN = 32  # the low bits of a batch id that number its runs (version and variant bits lie above)


def batch_base() -> int:
    """A new batch id (as a 128-bit int) whose low 32 bits are free to number up to 2**32 runs."""
    return uuid.uuid4().int >> _BATCH_SPAN << _BATCH_SPAN


def batch_run_ids(n: int) -> list[int]:
    """The ids (as 128-bit ints) of `n` new runs: one random version-4 UUID per 2**32 runs with its low 32 bits
    numbering them. Unique as uuid4 ids are in practice (90 random bits per batch), at the cost of one uuid4 per
    batch instead of one per run."""
    out: list[int] = []
    while len(out) < n:
        base = batch_base()
        out.extend(range(base, base + min(n - len(out), 1 << _BATCH_SPAN)))
    return out


_new_uuid = object.__new__
_set_attr = object.__setattr__
_SAFE_UNKNOWN = uuid.SafeUUID.unknown


def _uuid_unchecked(value: int) -> uuid.UUID:
    u: uuid.UUID = _new_uuid(uuid.UUID)
    _set_attr(u, "int", value)
    _set_attr(u, "is_safe", _SAFE_UNKNOWN)
    return u


def _uuid_checked(value: int) -> uuid.UUID:
    return uuid.UUID(int=value)


# `uuid.UUID(int=value)` without its argument checks (the value is a valid id already): a third of the cost;
# the checked constructor on a Python whose UUID keeps its fields elsewhere.
uuid_from_int: Callable[[int], uuid.UUID] = (
    _uuid_unchecked if {"int", "is_safe"} <= set(getattr(uuid.UUID, "__slots__", ())) else _uuid_checked)


class FlowRun:
    """One run of a flow. Subflow runs point at their parent flow run."""

    __slots__ = ("id", "name", "flow_name", "flow_version", "parameters", "tags", "start_ts", "end_ts", "state",
                 "state_history", "run_count", "parent_flow_run_id", "_task_runs", "_later", "expected_start_ts", "abandoned",
                 "__weakref__")

    def __init__(self, id: uuid.UUID, name: str, flow_name: str, parameters: dict[str, Any],
                 tags: frozenset[str], state: State, parent_flow_run_id: uuid.UUID | None = None,
                 flow_version: str | None = None):
        self.id = id
        self.name = name
        self.flow_name = flow_name
        self.flow_version = flow_version
        self.parameters = parameters
        self.tags = tags
        self.start_ts: float | None = None
        self.end_ts: float | None = None
        self.state = state
        self.state_history = [state]
        self.run_count = 0
        self.parent_flow_run_id = parent_flow_run_id
        self._task_runs: list[TaskRun] = []
        self._later: list[tuple[int, Any]] = []  # (place, compact runs of a .map()) whose records come on reading
        self.expected_start_ts: float | None = None  # a scheduled run's time (deployments)
        self.abandoned = False

    def set_state(self, state: State) -> None:
        """Kept for callers not yet converted: goes through `distributary.engine.transitions.set_state`."""
        _set_state(self, state)

    @property
    def task_runs(self) -> list[TaskRun]:
        """The task runs of this flow run, in the order they were created (the records of a compact `.map()`
        are made now, on first reading)."""
        later = self._later
        if later:
            self._later = []
            runs = self._task_runs
            for place, fan in reversed(later):
                runs[place:place] = fan.all_runs()
        return self._task_runs

    def add_task_runs(self, runs: Sequence[TaskRun]) -> None:
        self._task_runs.extend(runs)

    def task_runs_later(self, fan: Any) -> None:
        """Count the runs of a compact `.map()` (`engine.fanout.Fanout`) among this run's, their records made on
        reading `task_runs`."""
        self._later.append((len(self._task_runs), fan))

    start_time = TaskRun.start_time
    end_time = TaskRun.end_time

    def __repr__(self) -> str:
        return f"FlowRun(name={self.name!r}, state={self.state!r})"


class RunRecorder:
    """Keeps flow runs and task runs. Its methods are called by `RecorderSink` from the run-event dispatcher
    (batched, in the order things happened; everything is delivered by the end of each top-level flow run)."""

    def flow_run_started(self, run: FlowRun) -> None:  # pragma: no cover - interface
        pass

    def flow_run_finished(self, run: FlowRun) -> None:  # pragma: no cover - interface
        pass

    def task_run_finished(self, run: TaskRun) -> None:  # pragma: no cover - interface
        pass


def _plain_set_state(run: Any, state: State) -> None:
    run.state = state
    run.state_history.append(state)


# `distributary.engine.transitions` installs its `set_state` here when imported, so `run.set_state(s)` on a
# record passes the seam too (this module is below the engine and cannot import it).
_set_state: Callable[[Any, State], Any] = _plain_set_state


class SinkHub(Protocol):
    """Where run-event sinks are registered and flushed: `distributary.engine.transitions`."""

    def add_sink(self, sink: RunEventSink) -> None: ...

    def remove_sink(self, sink: RunEventSink) -> None: ...

    def flush(self, timeout: float | None = None) -> bool: ...

    def deliver(self) -> None: ...


# `distributary.engine.transitions` installs itself here when imported (as `import distributary` does), so the
# layers below the engine (the run store's sink) register with it without importing it.
_sink_hub: SinkHub | None = None


def sink_hub() -> SinkHub:
    if _sink_hub is None:
        raise RuntimeError("the engine's transitions are not loaded: import distributary first")
    return _sink_hub


class RecorderSink:
    """The run-event sink that feeds the current `RunRecorder` (`get_recorder()`): `flow_run_created` calls
    `flow_run_started`, `run_finished` calls `flow_run_finished` or `task_run_finished`."""

    kinds: frozenset[str] | None = frozenset({FLOW_RUN_CREATED, RUN_FINISHED, FINISHED})

    def watches_task_runs(self) -> bool:
        """Only a recorder that does something with a finished task run needs to hear of each one."""
        return type(_recorder).task_run_finished is not RunRecorder.task_run_finished

    def handle(self, events: Sequence[RunEvent]) -> None:
        recorder = _recorder
        for kind, run, _ in events:
            if kind in (RUN_FINISHED, FINISHED):
                if isinstance(run, TaskRun):
                    recorder.task_run_finished(run)
                else:
                    recorder.flow_run_finished(run)
            elif kind == FLOW_RUN_CREATED:
                recorder.flow_run_started(run)

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def close(self) -> None:
        pass


class InMemoryRecorder(RunRecorder):
    """Keeps the most recent flow runs (each with its task runs) in memory."""

    def __init__(self, max_flow_runs: int = 100):
        self.flow_runs: deque[FlowRun] = deque(maxlen=max_flow_runs)
        self._by_id: dict[uuid.UUID, FlowRun] = {}
        self._lock = threading.Lock()

    def flow_run_started(self, run: FlowRun) -> None:
        with self._lock:
            if len(self.flow_runs) == self.flow_runs.maxlen:
                self._by_id.pop(self.flow_runs[0].id, None)
            self.flow_runs.append(run)
            self._by_id[run.id] = run

    def get_flow_run(self, run_id: uuid.UUID) -> FlowRun | None:
        return self._by_id.get(run_id)


_recorder: RunRecorder = InMemoryRecorder()


def get_recorder() -> RunRecorder:
    return _recorder


def set_recorder(recorder: RunRecorder) -> None:
    global _recorder
    _recorder = recorder


_ADJECTIVES = ("amber", "brisk", "calm", "daring", "eager", "fuzzy", "gentle", "hardy", "icy", "jolly", "keen",
               "lively", "mellow", "nimble", "proud", "quiet", "rapid", "sunny", "tidy", "vivid", "witty", "zesty")
_ANIMALS = ("otter", "heron", "lynx", "marten", "beaver", "kestrel", "salmon", "newt", "badger", "ibis", "stoat",
            "pike", "egret", "vole", "tern", "eel", "wren", "carp", "moose", "crane", "trout", "mink")
_flow_counter = itertools.count()


def flow_run_name(run_id: uuid.UUID) -> str:
    """Adjective-animal names, made unique by a short piece of the run id."""
    rnd = random.Random(run_id.int)
    return f"{rnd.choice(_ADJECTIVES)}-{rnd.choice(_ANIMALS)}-{run_id.hex[:6]}"
