"""The run-store sink: turns run events into rows and writes them on a background writer thread, in bulk.

`handle(events)` (called by the dispatcher of `distributary.engine.transitions`) only appends to a list and wakes
the writer, so recording never slows a task. The writer converts a whole backlog into one `Batch` (a run that
changed state five times in it is one upsert and five state rows) and writes it in one transaction. If the
database is unavailable or locked, the rows are kept (up to `MAX_HELD` rows in memory, beyond that spooled to
`DISTRIBUTARY_HOME/spool/`) and written when it returns; spooled batches left by a process that ended are
written by the next sink that starts. Anything that cannot be kept is reported as lost, loudly.
"""
from __future__ import annotations

import atexit
import logging
import os
import pickle
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import settings
from ..runs import (
    ARTIFACT,
    EVENT_KINDS,
    FLOW_RUN_CREATED,
    LOG,
    RUN_FINISHED,
    STATE_CHANGED,
    STATES_CHANGED,
    TASK_RUNS_CREATED,
    FlowRun,
    RunEvent,
    sink_hub,
)
from .batch import Batch, compact_task_runs, flow_id_for
from .rows import flow_run_row, log_row, state_row

MAX_HELD = 1_000_000       # rows kept in memory while the database is away; beyond: spooled to disk
RETRY_MAX_DELAY = 5.0      # seconds between two attempts to write while the database is away
WRITE_INTERVAL = 1.0       # seconds the writer gathers events before writing them (flush() writes at once)
WRITE_AT = 300_000         # ... or until this many events are waiting
PENDING_DELAY = 5.0        # seconds a created task run that has not started yet waits before its row is written
FLUSH_MAX = 60.0           # the longest flush() waits, even with no timeout
PROCESS_AT = 5_000         # task runs (in a batch, or created at once) from which SQLite is written by a process
PROCESS_WRITE_INTERVAL = 0.2  # seconds the writer gathers events once a writer process writes them
_log = logging.getLogger("distributary.runstore")


class RunStoreSink:
    """A `RunEventSink` writing to a `RunStorage` (by default the configured run store)."""

    kinds: frozenset[str] | None = EVENT_KINDS | {STATES_CHANGED}  # every kind; a cluster batch's states in bulk

    def __init__(self, storage: Any = None, url: str | None = None, spool_dir: Path | None = None,
                 kinds: frozenset[str] | None = None):
        if kinds is not None:
            self.kinds = kinds
        self._storage = storage
        self._url = url
        self._spool_dir = Path(spool_dir) if spool_dir else Path(settings.get("HOME")) / "spool"
        self._pending: list[RunEvent] = []
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._received = 0          # events handed to handle()
        self._done = 0              # events written (or given up on)
        self._held: Batch | None = None  # rows that failed to write, retried
        self._task_flow: dict[str, str] = {}  # task run id -> flow run id, for task-run logs that lack it
        self._created: list[Any] = []  # the created task runs not in _task_flow yet (indexed when a log needs it)
        # task runs created but not started yet: their row waits (PENDING_DELAY) for the run's next state, so a
        # short run's row is built and written once, not once Pending and again when it finished
        self._waiting: dict[Any, Any] = {}      # task run -> its state (the one it was created in)
        self._since: dict[Any, float] = {}      # task run -> when it began waiting (time.monotonic())
        self._next_waiting: dict[Any, Any] = {}  # what waits once this write is done
        self._next_since: dict[Any, float] = {}
        self._failing_since: float | None = None
        self._failures = 0  # failed writes so far
        self._flush_requested = False
        self._lost = 0
        self._closed = False
        self._large = False  # this process records many task runs: SQLite is written by a writer process
        self._process: Any = None  # the WriterProcess, once started
        self._process_failed = False
        self._interval = WRITE_INTERVAL
        self._thread = threading.Thread(target=self._loop, name="distributary-runstore-writer", daemon=True)
        self._thread.start()

    # -- the sink protocol -----------------------------------------------------------------------------------
    def handle(self, events: Sequence[RunEvent]) -> None:
        with self._cond:
            self._pending.extend(events)
            self._received += len(events)
            self._cond.notify()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait (at most `timeout` s) until every event handed so far is written. False if not all were."""
        # bounded even when asked to wait for ever: a database that does not answer never holds a flow's end
        deadline = time.monotonic() + (FLUSH_MAX if timeout is None else timeout)
        with self._cond:
            target = self._received
            failures_at_start = self._failures
            self._flush_requested = True
            self._cond.notify_all()  # a writer waiting to retry retries now
            while self._done < target or self._held is not None or self._waiting:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if self._failing_since is not None and self._failures > failures_at_start:
                    break  # the database is still away (a retry made during this flush failed): do not wait
                self._cond.wait(min(left, 0.05))
            ok = self._done >= target and self._held is None and not self._waiting
            waiting = max(0, target - self._done)
            held = len(self._held) if self._held is not None else 0
        if not ok:
            _log.warning("The run store (%s) has not yet written %d rows and %d run events; they are kept and "
                         "written when the database can be reached again.", self._where(), held, waiting)
        return ok

    def close(self, timeout: float | None = 10.0) -> bool:
        ok = self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=1.0)
        if self._process is not None and not self._thread.is_alive():
            self._process.close()
            self._process = None
        if not ok:
            self._spool_held()
        return ok

    @property
    def lost(self) -> int:
        """Rows given up on (reported as errors when it happened)."""
        return self._lost

    # -- the writer ------------------------------------------------------------------------------------------
    def storage(self) -> Any:
        if self._storage is None:
            from .sqlite_writer import open_writer

            self._storage = open_writer(self._url)
        return self._storage

    def _where(self) -> str:
        try:
            eng = getattr(self._storage, "engine", None)
            if eng is not None:
                return eng.url.render_as_string(hide_password=True)
            if getattr(self._storage, "url", None):
                return str(self._storage.url)
            from .db import database_url, redact

            return redact(self._url or database_url())
        except Exception:  # describing the place must never fail the report
            return "the run store"

    def _loop(self) -> None:
        self._replay_spool()
        try:  # open the store now, at the flow's start: its imports, under a busy .map()'s threads, take seconds
            self.storage()
        except Exception:  # the first write reports it
            pass
        delay = 0.1
        while True:
            with self._cond:
                while not self._pending and self._held is None and not self._closed:
                    if self._waiting:  # rows held back: written after their delay, or at a flush
                        if not self._flush_requested:
                            self._cond.wait(WRITE_INTERVAL)
                        break
                    self._cond.wait()
                # Coalesce: a run created, started and finished within one interval is one row built and
                # written once, and the writer competes less with a busy flow for the interpreter.
                deadline = time.monotonic() + self._interval
                while (not self._flush_requested and not self._closed and len(self._pending) < WRITE_AT
                       and self._held is None and (self._large or len(self._pending) < PROCESS_AT)):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self._closed and not self._pending and self._held is None and not self._waiting:
                    return
                events, self._pending = self._pending, []
                force = self._flush_requested or self._closed
                self._flush_requested = False
            if not self._large and any(e[0] == TASK_RUNS_CREATED and len(e[2]) >= PROCESS_AT for e in events):
                self._large = True  # a large .map(): its writer process starts while these events are converted
            if self._large and self._process is None and not self._process_failed:
                self._start_process()
            # a held batch stays `_held` until it is written, so flush() never reports it done early
            batch = self._held if self._held is not None else Batch()
            try:
                self._convert(events, batch, force)
            except Exception:
                _log.exception("The run store could not record %d run events; they are lost.", len(events))
                self._lost += len(events)
            if self._large and self._process is None and not self._process_failed:
                self._start_process()  # large from this batch's task runs on
            if len(batch) and not self._write(batch):
                self._hold(batch)
                with self._cond:
                    self._waiting, self._since = self._next_waiting, self._next_since
                    self._done += len(events)  # kept: counted as handled so flush() reports them as held
                    self._cond.notify_all()
                    if self._closed:
                        return
                    self._cond.wait(delay)
                delay = min(delay * 2, RETRY_MAX_DELAY)
                continue
            delay = 0.1
            with self._cond:
                self._waiting, self._since = self._next_waiting, self._next_since
                self._held = None
                self._done += len(events)
                self._cond.notify_all()

    def _start_process(self) -> None:
        """Start the writer process, if the store is a SQLite file (any other store is written here). It starts
        while this batch is made; its first write waits until it is ready."""
        from .writer_process import WriterProcess

        try:
            storage = self.storage()
        except Exception:  # the write reports it
            return
        path = getattr(storage, "path", None)  # a SqliteWriter; a SqlRunStorage on SQLite: its file
        if path is None and getattr(storage, "dialect", None) == "sqlite":
            path = storage.engine.url.database
        if not path or not os.path.isfile(path):
            self._process_failed = True
            return
        try:
            self._process = WriterProcess(path)
            self._interval = PROCESS_WRITE_INTERVAL
        except OSError as exc:
            self._process_failed = True
            _log.warning("The run store's writer process could not be started (%s); this process writes its run "
                         "records itself.", exc)

    def _write_out(self, batch: Batch) -> None:
        from .writer_process import WriterProcessError

        proc = self._process
        if proc is not None:
            try:
                proc.write(batch)
                return
            except WriterProcessError as exc:
                self._process, self._process_failed, self._interval = None, True, WRITE_INTERVAL
                _log.warning("%s", exc)
                proc.close(1.0)
        self.storage().write(batch)

    def _write(self, batch: Batch) -> bool:
        try:
            self._write_out(batch)
        except Exception as exc:
            with self._cond:
                self._failures += 1
                self._cond.notify_all()
            if self._failing_since is None:
                self._failing_since = time.monotonic()
                _log.warning("The run store (%s) cannot be written (%s); keeping %d rows and retrying. Flows go "
                             "on running.", self._where(), str(exc).splitlines()[0][:300], len(batch))
            return False
        if self._failing_since is not None:
            _log.warning("The run store (%s) is writable again after %.1f s; the rows kept meanwhile are written.",
                         self._where(), time.monotonic() - self._failing_since)
            self._failing_since = None
            self._replay_spool()
        return True

    def _hold(self, batch: Batch) -> None:
        self._held = batch
        if len(batch) > MAX_HELD:
            self._spool_held()

    def _spool_held(self) -> None:
        batch, self._held = self._held, None
        if batch is None or not len(batch):
            return
        try:
            self._spool_dir.mkdir(parents=True, exist_ok=True)
            path = self._spool_dir / f"{time.time():.6f}-{os.getpid()}-{uuid.uuid4().hex[:8]}.batch"
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(pickle.dumps(batch.to_dict(), protocol=pickle.HIGHEST_PROTOCOL))
            tmp.replace(path)
            _log.warning("The run store is unavailable: %d rows spooled to %s; they are written when a flow next "
                         "runs with the run store reachable.", len(batch), path)
        except OSError as exc:
            self._lost += len(batch)
            _log.error("The run store is unavailable and %d run records could not be spooled to %s (%s): they "
                       "are LOST.", len(batch), self._spool_dir, exc)

    def _replay_spool(self) -> None:
        try:
            files = sorted(self._spool_dir.glob("*.batch"))
        except OSError:
            return
        for path in files:
            try:
                claimed = path.with_suffix(f".{os.getpid()}.replaying")
                path.rename(claimed)  # one process replays a file
            except OSError:
                continue
            try:
                batch = Batch.from_dict(pickle.loads(claimed.read_bytes()))
                self.storage().write(batch)
                claimed.unlink()
            except Exception as exc:
                claimed.rename(path)
                _log.warning("Spooled run records %s could not be written yet (%s).", path, exc)
                return

    # -- events to rows --------------------------------------------------------------------------------------
    def _convert(self, events: Sequence[RunEvent], batch: Batch, force: bool = True) -> None:
        # A run's row is built once per batch from its last state (a .map() run changes state three times or
        # more per batch); a flow run's history goes in as one state row per change, a task run's is a column
        # of its row, encoded compact here and made a row where it is written (`rows.py`). No container per
        # task run is made here (see `rows.compact_task_runs`): runs map to states, in dicts.
        task_flow = self._task_flow
        flow_runs: dict[Any, tuple[Any, Any]] = {}
        task_runs: dict[Any, Any] = {}  # task run record (an identity hash) -> the state to write
        self._next_waiting, self._next_since = self._waiting, self._since  # unchanged if this conversion fails
        created: dict[Any, Any] = {}  # task runs created in this batch -> their first state
        states = batch.states
        for kind, run, payload in events:
            if kind == STATE_CHANGED:
                if run.__class__ is FlowRun:
                    states.append(state_row(str(run.id), payload))
                    flow_runs[run.id] = (run, payload)
                else:
                    task_runs[run] = payload
            elif kind == STATES_CHANGED:  # many runs' new states at once (a cluster batch's outcome)
                for r, sts in payload:
                    if not sts:
                        continue
                    if r.__class__ is FlowRun:
                        rs = str(r.id)
                        states.extend(state_row(rs, st) for st in sts)
                        flow_runs[r.id] = (r, sts[-1])
                    else:
                        task_runs[r] = sts[-1]
            elif kind == TASK_RUNS_CREATED:
                self._created.append(payload)
                if len(payload) >= PROCESS_AT:
                    self._large = True
                for tr in payload:
                    if tr not in task_runs:
                        created[tr] = task_runs[tr] = tr.state_history[0] if tr.state_history else tr.state
            elif kind == RUN_FINISHED:
                if run.__class__ is FlowRun:
                    flow_runs[run.id] = (run, payload)
                else:
                    task_runs[run] = payload
            elif kind == FLOW_RUN_CREATED:
                fid = flow_id_for(run.flow_name)
                batch.flows.setdefault(fid, {"id": fid, "name": run.flow_name, "created": time.time()})
                first = run.state_history[0] if run.state_history else run.state
                states.append(state_row(str(run.id), first))
                flow_runs.setdefault(run.id, (run, first))
            elif kind == LOG:
                if payload.get("run_kind") == "task" and not payload.get("flow_run_id") and self._created:
                    self._index_created()
                batch.logs.append(log_row(payload, task_flow))
            elif kind == ARTIFACT:
                batch.add_artifact(payload)
        now = time.time()
        self._hold_back(task_runs, created, force)
        for run, state in flow_runs.values():
            batch.flow_runs[str(run.id)] = flow_run_row(run, state, now)
        if task_runs:
            if len(task_runs) >= PROCESS_AT:
                self._large = True
            batch.compact.append((now, compact_task_runs(task_runs.items()), len(task_runs)))
        if len(task_flow) > 2_000_000:  # only logs of live task runs need it
            task_flow.clear()
        if sum(len(c) for c in self._created) > 2_000_000:
            self._created.clear()

    def _index_created(self) -> None:
        fr_ids: dict[Any, str] = {}
        task_flow = self._task_flow
        for runs in self._created:
            for tr in runs:
                fr = tr.flow_run_id
                if fr is not None:
                    fs = fr_ids.get(fr)
                    if fs is None:
                        fs = fr_ids[fr] = str(fr)
                    task_flow[str(tr.id)] = fs
        self._created.clear()

    def _hold_back(self, task_runs: dict[Any, Any], created: dict[Any, Any], force: bool) -> None:
        """Take the task runs whose only news is their creation out of `task_runs`, to wait (`_next_waiting`,
        since `_next_since`) until they have waited PENDING_DELAY or a flush comes; put back into it those that
        waited long enough. `_waiting` changes only once the rows of this batch are written or held, so a flush
        never sees a row neither waiting nor written. Costs what this batch brought, not what waits: the
        waiting runs are in the order they began waiting."""
        waiting = self._waiting
        if force:
            for run, state in waiting.items():
                task_runs.setdefault(run, state)
            self._next_waiting, self._next_since = {}, {}
            return
        clock = time.monotonic()
        keep, since = waiting.copy(), self._since.copy()
        if keep:
            for run in [r for r in task_runs if r in keep]:
                if task_runs[run] is keep[run]:
                    del task_runs[run]  # no news: it still waits
                else:
                    del keep[run], since[run]
            expired = []
            for run, t in since.items():
                if clock - t < PENDING_DELAY:
                    break
                expired.append(run)
            for run in expired:
                task_runs[run] = keep.pop(run)
                del since[run]
        for run, state in created.items():
            if task_runs[run] is state:
                keep[run] = state
                since[run] = clock
                del task_runs[run]
        self._next_waiting, self._next_since = keep, since


# -----------------------------------------------------------------------------------------------------------------
# The process-wide sink, registered at flow-run start
# -----------------------------------------------------------------------------------------------------------------
_sink: RunStoreSink | None = None
_sink_lock = threading.Lock()


def recording_enabled() -> bool:
    return bool(settings.get("RUNSTORE_ENABLED"))


def ensure_sink() -> RunStoreSink | None:
    """Register the run-store sink with the transitions (once per process) when recording is on; the engine
    calls this when a flow run starts. Cheap after the first call; never raises."""
    global _sink
    if _sink is not None:
        return _sink
    try:
        if not recording_enabled():
            return None
        with _sink_lock:
            if _sink is None:
                sink = RunStoreSink()
                sink_hub().add_sink(sink)
                atexit.register(_close_at_exit, sink)
                _sink = sink
    except Exception:
        _log.exception("The run store could not be started; this process's runs are not recorded.")
        return None
    return _sink


_direct_writer: Any = None


def write_artifact_now(data: dict[str, Any]) -> bool:
    """Write one artifact event at once, in this thread (a task on a remote worker: the process may be stopped
    as soon as the task returns, before a background writer would run). Failures are logged, never raised."""
    global _direct_writer
    if not recording_enabled():
        return False
    try:
        with _sink_lock:
            if _direct_writer is None:
                from .sqlite_writer import open_writer

                _direct_writer = open_writer(None)
            batch = Batch()
            batch.add_artifact(data)
            _direct_writer.write(batch)
        return True
    except Exception as exc:
        _log.error("The run store could not record artifact %s (%s): it is LOST.", data.get("key") or data["id"],
                   str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__)
        return False


def current_sink() -> RunStoreSink | None:
    return _sink


def stop_sink(timeout: float | None = 10.0) -> None:
    """Write out and unregister the process's sink (tests; a change of database)."""
    global _sink
    with _sink_lock:
        sink, _sink = _sink, None
    if sink is not None:
        sink_hub().remove_sink(sink)
        sink.close(timeout)


def _close_at_exit(sink: RunStoreSink) -> None:
    try:
        sink_hub().deliver()
    except Exception:  # interpreter shutting down
        pass
    sink.close(timeout=float(settings.get("RUNSTORE_EXIT_TIMEOUT")))
