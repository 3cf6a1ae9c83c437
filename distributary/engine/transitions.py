"""The one place a run's state changes, and the stream of run events every observer reads.

`set_state(run, state)` appends to the run's history and emits a `state_changed` event (`set_states_many`: many
runs at once, one bulk `states_changed` event, see `distributary.runs.STATES_CHANGED`); the other emitters say
that runs were created, a run finished, a log record or an artifact was made. Events go into one process-wide
queue (an append, no lock, no I/O) and a dispatcher thread hands them in batches to the registered sinks
(`distributary.runs.RunEventSink`), in the order they happened. Kinds that no sink wants are never queued, so
with no sinks the seam costs one set lookup per change.

Later, orchestration rules (cancellation, pause, concurrency limits) accept, delay or refuse a proposed
transition here, before it is applied.
"""
from __future__ import annotations

import logging
import sys as _sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from itertools import repeat, starmap
from typing import Any

from .. import runs as _runs
from ..runs import (
    ARTIFACT,
    EVENT_KINDS,
    FANOUT_CREATED,
    FANOUT_KINDS,
    FANOUT_SETTLED,
    FINISHED,
    FLOW_RUN_CREATED,
    LOG,
    RUN_FINISHED,
    STATE_CHANGED,
    STATES_CHANGED,
    TASK_RUNS_CREATED,
    RecorderSink,
    RunEvent,
    RunEventSink,
)
from ..states import State
from .gcpause import gc_paused

DISPATCH_INTERVAL = 0.05   # seconds between two deliveries when events trickle in
WAKE_AT = 10_000           # queued events that wake the dispatcher at once
HELP_AT = 20_000           # queued events from which the thread that queues one delivers them itself
DISPATCH_SLICE = 2_000     # events the dispatcher thread delivers at a time
HELP_SLICE = 5_000         # ... and a task thread (`_help`)
DELIVER_CREATED_AT = 5_000  # task runs created at once that are delivered at once
HOLD_AT = 40_000           # queued events from which the thread that queues one waits its turn to deliver
HOLD_MAX = 0.05            # seconds it waits at most
HELP_QUIET = 0.5           # seconds the dispatcher leaves delivery to the task threads after one delivered

_log = logging.getLogger("distributary.events")
_sinks: tuple[RunEventSink, ...] = ()
_wanted: frozenset[str] = frozenset()  # the union of what the sinks want
_BULK = {STATES_CHANGED: frozenset({STATE_CHANGED}), FINISHED: frozenset({STATE_CHANGED, RUN_FINISHED})}  # the
#  kinds a bulk event is spelled out as, for a sink that does not name it
_ALL_KINDS = EVENT_KINDS | _BULK.keys()
_spell: dict[frozenset[str] | None, frozenset[str]] = {}  # a sink's kinds -> the bulk kinds it gets spelled out
_queue: deque[Any] = deque()  # the events' items, three per event (kind, run, payload): no tuple per queued event
_sinks_lock = threading.Lock()
_deliver_lock = threading.RLock()
_wake = threading.Event()
_thread: threading.Thread | None = None
_depth = 0  # deliver() calls under way in the thread holding _deliver_lock (1 outside any sink's handle)
_helped = 0.0  # when a task thread last delivered (time.monotonic())


# ---------------------------------------------------------------------------------------------------------------
# Transitions
# ---------------------------------------------------------------------------------------------------------------
def set_state(run: Any, state: State) -> State:
    """Make `state` the run's current state: append it to the history and tell the sinks. Returns it.
    A run that was abandoned (`abandon`) refuses it: its state and history stay as they are."""
    if run.abandoned:
        return state
    run.state = state
    run.state_history.append(state)
    if STATE_CHANGED in _wanted:
        _put(STATE_CHANGED, run, state)
    return state


def set_states(run: Any, states: Sequence[State]) -> None:
    """Apply several states in order (e.g. the history a remote worker sent back with a run)."""
    if not states or run.abandoned:
        return
    run.state = states[-1]
    run.state_history.extend(states)
    if STATE_CHANGED in _wanted:
        for s in states:
            _put(STATE_CHANGED, run, s)


def finish(run: Any, state: State) -> State:
    """`set_state(run, state)` then `run_finished(run)`, as one event (`runs.FINISHED`): how a run ends."""
    if run.abandoned:
        return state
    run.state = state
    run.state_history.append(state)
    if STATE_CHANGED in _wanted or RUN_FINISHED in _wanted or FINISHED in _wanted:
        _put(FINISHED, run, state)
    return state


def abandon(run: Any, state: State) -> None:
    """End a run that is still executing somewhere it cannot be stopped (a thread): `state` is its final state,
    and every later state its execution proposes is refused, so the outcome it reaches late changes neither
    its state nor its history."""
    finish(run, state)
    run.abandoned = True


def set_states_many(items: Sequence[tuple[Any, Sequence[State]]]) -> None:
    """Apply the new states of many runs at once: `items` are (run, its states in order), e.g. every run of a
    cluster batch. The same as `set_states` per run, with ONE event for the lot: sinks that name
    `runs.STATES_CHANGED` in their `kinds` receive `(STATES_CHANGED, None, items)` (bulk inserts); every other
    sink receives one `STATE_CHANGED` event per state, as from `set_states`. `items` must not change afterwards.
    An abandoned run refuses its states, as in `set_state`: it is left out of the event."""
    refused = False
    for run, states in items:
        if run.abandoned:
            refused = True
        elif states:
            run.state = states[-1]
            run.state_history.extend(states)
    if refused:
        items = [(run, states) for run, states in items if not run.abandoned]
    if items and (STATE_CHANGED in _wanted or STATES_CHANGED in _wanted):
        _put(STATES_CHANGED, None, items)


def set_states_told(items: Sequence[tuple[Any, Sequence[State]]]) -> None:
    """`set_states_many` for records made of a compact `.map()`'s runs whose states the batch's `fanout_settled`
    event tells the sinks already: the records take them (an abandoned run refuses them), with no event of their
    own (every sink that watches task runs takes the bulk events, or the map would not be compact)."""
    for run, states in items:
        if states and not run.abandoned:
            run.state = states[-1]
            run.state_history.extend(states)


def task_runs_created(runs: Sequence[Any]) -> None:
    """New task runs (all of one `.submit()` or `.map()`): one event for the lot. A large one is delivered at once,
    in this thread, before its runs start (the sinks prepare for it: the run store starts its writer process)."""
    if TASK_RUNS_CREATED in _wanted and runs:
        _put(TASK_RUNS_CREATED, None, list(runs))
        if len(runs) >= DELIVER_CREATED_AT:
            _help()


def fanout_created(fan: Any) -> None:
    """The runs of a compact `.map()` were created (`runs.FANOUT_CREATED`); a large one is delivered at once, as
    in `task_runs_created` (but as `deliver` does: no task threads deliver for a compact map, so the dispatcher
    does not stay out after it, and the runs' outcomes reach the sinks while the map runs)."""
    if FANOUT_CREATED in _wanted:
        _put(FANOUT_CREATED, None, fan)
        if fan.n >= DELIVER_CREATED_AT:
            deliver()


def fanout_settled(fan: Any, lo: int, starts: Sequence[float], ends: Sequence[float]) -> None:
    """Runs `lo` to `lo + len(ends)` of a compact `.map()` ran and completed, no record made of them
    (`runs.FANOUT_SETTLED`)."""
    if FANOUT_SETTLED in _wanted:
        _put(FANOUT_SETTLED, None, (fan, lo, starts, ends))


def flow_run_created(run: Any) -> None:
    if FLOW_RUN_CREATED in _wanted:
        _put(FLOW_RUN_CREATED, run, None)


def run_finished(run: Any) -> None:
    """The run reached its final state (hooks may still run)."""
    if RUN_FINISHED in _wanted:
        _put(RUN_FINISHED, run, run.state)


def log_record(record: dict[str, Any]) -> None:
    if LOG in _wanted:
        _put(LOG, None, record)


def artifact(data: dict[str, Any]) -> None:
    if ARTIFACT in _wanted:
        _put(ARTIFACT, None, data)


class _LogHandler(logging.Handler):
    """On the `distributary` logger: each record becomes a `log` event, only while a sink wants them."""

    def handle(self, record: logging.LogRecord) -> bool:  # no lock, no formatting unless a sink wants logs
        if LOG in _wanted and record.name != _log.name:
            from ..logging import record_to_dict

            _put(LOG, None, record_to_dict(record))
        return True

    def emit(self, record: logging.LogRecord) -> None:  # pragma: no cover - handle() does the work
        self.handle(record)


_log_handler = _LogHandler()


def _install_log_handler() -> None:
    root = logging.getLogger("distributary")
    if _log_handler not in root.handlers:
        root.addHandler(_log_handler)


def wants(kind: str) -> bool:
    """Whether any sink wants events of `kind` (to skip building an event's payload)."""
    return kind in _wanted


# ---------------------------------------------------------------------------------------------------------------
# Sinks and delivery
# ---------------------------------------------------------------------------------------------------------------
_PER_TASK_RUN = frozenset({TASK_RUNS_CREATED, STATE_CHANGED, STATES_CHANGED, RUN_FINISHED, FINISHED})


def task_runs_watched() -> bool:
    """Whether a sink wants to hear of each task run as it is created and changes state and does not take a
    compact `.map()`'s runs in bulk (`runs.FANOUT_KINDS`): then a `.map()` keeps one record per run
    (`engine.fanout`). A sink may say it does not watch them after all (`watches_task_runs()`)."""
    for sink in _sinks:
        kinds = getattr(sink, "kinds", None)
        if kinds is not None and kinds >= FANOUT_KINDS:
            continue
        if kinds is None or not _PER_TASK_RUN.isdisjoint(kinds):
            watches = getattr(sink, "watches_task_runs", None)
            if watches is None or watches():
                return True
    return False


def add_sink(sink: RunEventSink) -> None:
    """Register a sink; it receives the events emitted from now on."""
    global _sinks
    with _sinks_lock:
        if sink not in _sinks:
            _sinks = (*_sinks, sink)
        _recompute()
    if LOG in _wanted:
        _install_log_handler()
    _ensure_thread()


def remove_sink(sink: RunEventSink) -> None:
    """Deliver what is queued, then unregister the sink."""
    global _sinks
    deliver()
    with _sinks_lock:
        _sinks = tuple(s for s in _sinks if s is not sink)
        _recompute()


def sinks() -> tuple[RunEventSink, ...]:
    return _sinks


_recorder_sink: RecorderSink | None = None


def ensure_recorder_sink() -> None:
    """Register the sink that feeds `distributary.runs.get_recorder()` (once per process, on first use, so a
    process that never runs a task starts no dispatcher thread)."""
    global _recorder_sink
    if _recorder_sink is None:
        with _sinks_lock:
            if _recorder_sink is not None:
                return
            sink = _recorder_sink = RecorderSink()
        add_sink(sink)


def _recompute() -> None:
    global _wanted
    wanted: set[str] = set()
    for s in _sinks:
        kinds = getattr(s, "kinds", None)
        wanted.update(EVENT_KINDS if kinds is None else kinds)
    _wanted = frozenset(wanted)
    _spell.clear()


def _put(kind: str, run: Any, payload: Any) -> None:
    # Queued as three items (one `extend`, atomic under the interpreter lock), not as an event tuple: 10^5 tuples
    # waiting in the queue are as many objects for the cyclic collector, which then runs its passes more often
    _queue.extend((kind, run, payload))
    if len(_queue) >= 3 * WAKE_AT:
        if len(_queue) >= 3 * HELP_AT:
            hold = len(_queue) >= 3 * HOLD_AT
            if hold or not _depth:  # (a delivery under way: `_help` would return at once)
                _help(hold)
        elif not _wake.is_set():  # set() takes a lock: once, not once per event past WAKE_AT
            _wake.set()


def _help(hold: bool = False) -> None:
    """Deliver the backlog in this thread. Among a busy `.map()`'s task threads the dispatcher gets one thread's
    share of the interpreter and falls behind; the sinks' own threads then get their events late and do their
    work after the map. A thread that queues past HELP_AT delivers instead, unless another thread is delivering
    (it never waits for that) or this one is delivering already (an event a sink emitted while handling).

    `hold`: the backlog is so long that events are made faster than they are delivered; this thread waits its
    turn (HOLD_MAX at most: it never deadlocks with a lock a sink needs). The delivering thread then has the
    interpreter to itself more often: the map runs a little slower and its records are written while it runs,
    instead of all of them after it."""
    global _helped
    if hold:
        if not _deliver_lock.acquire(timeout=HOLD_MAX):
            return
    elif _depth or not _deliver_lock.acquire(blocking=False):  # (a delivery under way: no lock call per event)
        return
    try:
        if _depth == 0:  # one slice: the next event queued past HELP_AT (any thread's) delivers the next one,
            _slice(HELP_SLICE)  # so the work is spread over the threads that make the events, not left to one
            _helped = time.monotonic()
    finally:
        _deliver_lock.release()


def deliver(limit: int | None = None) -> None:
    """Hand every queued event to the sinks now, in this thread (in order; safe from any thread); `limit`: at
    most that many events at a time, letting other threads deliver in between."""
    while True:
        with _deliver_lock:
            more = _slice(limit)
        if not more or len(_queue) >= 3 * HELP_AT:  # past HELP_AT the task threads deliver (`_help`)
            return


def _slice(limit: int | None) -> bool:
    """`_deliver` with `_depth` counting it (the caller holds `_deliver_lock`)."""
    global _depth
    _depth += 1
    try:
        return _deliver(limit)
    finally:
        _depth -= 1


def _deliver(limit: int | None = None) -> bool:
    """Deliver what is queued (at most `limit` events); whether events are left because of the limit."""
    while _queue:
        n = len(_queue) if limit is None else min(len(_queue), 3 * limit)  # `_put` extends by three at once
        items = starmap(_queue.popleft, repeat((), n))
        # the event tuples live only while the sinks handle them: no collection meanwhile (they are no garbage)
        with gc_paused():
            _hand(list(zip(items, items, items)))
        if limit is not None:
            return bool(_queue)
    return False


def _hand(batch: list[RunEvent]) -> None:
    spelled: dict[frozenset[str], list[RunEvent]] = {}  # bulk kinds spelled out -> the batch so
    for sink in _sinks:
        kinds = getattr(sink, "kinds", None)
        try:
            bulk = _spell[kinds]
        except KeyError:
            bulk = _spell[kinds] = _spelled_for(kinds)
        except TypeError:  # (kinds given as a set)
            bulk = _spelled_for(kinds)
        events = batch
        if bulk:
            events = spelled.get(bulk)  # type: ignore[assignment]
            if events is None:
                events = spelled[bulk] = _expand(batch, bulk)
        if kinds is not None and not kinds >= _ALL_KINDS:
            events = [e for e in events if e[0] in kinds]
        elif kinds is None:  # only a sink that names them gets a compact .map()'s events
            events = [e for e in events if e[0] not in FANOUT_KINDS]
        if not events:
            continue
        try:
            sink.handle(events)
        except Exception:
            _log.exception("Run-event sink %r failed on %d events; they are lost for it.", sink,
                           len(events))


def _spelled_for(kinds: frozenset[str] | None) -> frozenset[str]:
    """The bulk kinds a sink wanting `kinds` gets spelled out: those it does not name, of which it wants a part."""
    if kinds is None:
        return frozenset(_BULK)
    return frozenset(b for b, parts in _BULK.items() if b not in kinds and parts & kinds)


def _expand(batch: list[RunEvent], bulk: frozenset[str]) -> list[RunEvent]:
    """`batch` with each event of a kind in `bulk` replaced by the events it stands for, in order: a
    STATES_CHANGED event by one STATE_CHANGED event per state, a FINISHED event by STATE_CHANGED and RUN_FINISHED."""
    if not any(e[0] in bulk for e in batch):
        return batch
    out: list[RunEvent] = []
    for e in batch:
        kind = e[0]
        if kind not in bulk:
            out.append(e)
        elif kind == STATES_CHANGED:
            out.extend((STATE_CHANGED, run, s) for run, states in e[2] for s in states)
        else:
            out.append((STATE_CHANGED, e[1], e[2]))
            out.append((RUN_FINISHED, e[1], e[2]))
    return out


def flush(timeout: float | None = None) -> bool:
    """Deliver what is queued, then ask each sink to write out what it holds (waiting at most `timeout` s
    per sink). True if every sink reports everything written."""
    deliver()
    ok = True
    for sink in _sinks:
        fn = getattr(sink, "flush", None)
        if fn is None:
            continue
        try:
            ok = bool(fn(timeout)) and ok
        except Exception:
            _log.exception("Run-event sink %r failed to flush.", sink)
            ok = False
    return ok


def _ensure_thread() -> None:
    global _thread
    if _thread is not None and _thread.is_alive():
        return
    with _sinks_lock:
        if _thread is not None and _thread.is_alive():
            return
        _thread = threading.Thread(target=_dispatch_loop, name="distributary-run-events", daemon=True)
        _thread.start()


def _dispatch_loop() -> None:
    while True:
        _wake.wait(DISPATCH_INTERVAL)
        _wake.clear()
        # While task threads deliver (a busy map), this thread stays out: it gets a small share of the interpreter
        # among them, and while it delivers they cannot. Otherwise it delivers in slices, so they can in between.
        if _queue and time.monotonic() - _helped > HELP_QUIET:
            deliver(DISPATCH_SLICE)


_runs._set_state = set_state  # `TaskRun.set_state` / `FlowRun.set_state` pass the seam too
_runs._sink_hub = _sys.modules[__name__]  # the run store registers its sink here

__all__ = ["set_state", "set_states", "set_states_many", "set_states_told", "finish", "task_runs_created", "flow_run_created", "run_finished", "log_record",
           "artifact", "wants", "task_runs_watched", "fanout_created", "fanout_settled", "ensure_recorder_sink", "add_sink", "remove_sink", "sinks", "deliver", "flush"]
