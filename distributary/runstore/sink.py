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
from itertools import islice
from pathlib import Path
from typing import Any

from .. import settings
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
    FlowRun,
    RunEvent,
    sink_hub,
)
from .batch import Batch, flow_id_for
from .compact import compact_fanout, compact_task_runs
from .rows import flow_run_row, log_row, state_row

MAX_HELD = 1_000_000       # rows kept in memory while the database is away; beyond: spooled to disk
RETRY_MAX_DELAY = 5.0      # seconds between two attempts to write while the database is away
WRITE_INTERVAL = 1.0       # seconds the writer gathers events before writing them (flush() writes at once)
WRITE_AT = 300_000         # ... or until this many events are waiting
PENDING_DELAY = 5.0        # seconds a created task run that has not started yet waits before its row is written
FLUSH_MAX = 60.0           # the longest flush() waits, even with no timeout
PROCESS_AT = 5_000         # task runs (in a batch, or created at once) from which SQLite is written by a process
PROCESS_WRITE_INTERVAL = 0.2  # seconds the writer gathers events once a writer process writes them
ENCODE_AT = 5_000          # events handed at once from which `handle` encodes their task runs itself
ENCODE_CHUNK = 2_000       # task runs per encoded chunk (and per frame sent from `handle`): bounded transients
ENCODED = "task_runs_encoded"  # (ENCODED, None, (task run records, flat encoding, count, when)), made by handle
_log = logging.getLogger("distributary.runstore")


class RunStoreSink:
    """A `RunEventSink` writing to a `RunStorage` (by default the configured run store)."""

    # every kind; the bulk ones as they are, and a compact .map()'s runs in bulk
    kinds: frozenset[str] | None = EVENT_KINDS | {STATES_CHANGED, FINISHED} | FANOUT_KINDS

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
        # a large .map()'s creation waits as one: (its task runs, since when)
        self._groups: list[tuple[Sequence[Any], float]] = []
        self._next_groups: list[tuple[Sequence[Any], float]] = []
        self._failing_since: float | None = None
        self._failures = 0  # failed writes so far
        self._flush_requested = False
        self._lost = 0
        self._closed = False
        self._large = False  # this process records many task runs: SQLite is written by a writer process
        self._process: Any = None  # the WriterProcess, once started
        self._process_failed = False
        self._process_lock = threading.Lock()
        self._storage_lock = threading.Lock()
        # Task-run rows sent to the writer process straight from `handle` (`_send_direct`) while a large map runs.
        # `_order` is held from taking events to sending what they became (the writer thread) or from encoding
        # to sending (`handle`): frames are numbered in the order their rows were made, and rows that come back
        # unwritten (`_returned`) are kept in that order.
        self._order = threading.Lock()
        self._pending_encoded = 0   # ENCODED events in _pending (none: rows may go straight to the process)
        # direct batches sent and answered: each counter has one writer (the sender holds `_order`; the answers
        # come from the process's reader thread), so no lock is shared with the reader thread on the way
        self._direct_sent = 0
        self._direct_answered = 0
        self._returned: dict[int, Batch] = {}  # frame number -> direct batch the process did not write
        self._direct_ok = True      # False from a failed or skipped frame until the rows kept are written
        self._child_failed = False  # the process skips frames until resumed
        self._interval = WRITE_INTERVAL
        self._thread = threading.Thread(target=self._loop, name="distributary-runstore-writer", daemon=True)
        self._thread.start()

    # -- the sink protocol -----------------------------------------------------------------------------------
    def handle(self, events: Sequence[RunEvent]) -> None:
        encoded = 0  # ENCODED events left for the writer thread (older than any row sent direct after them)
        if self._large or len(events) >= ENCODE_AT:
            events = self._encode(events)
            if self._process is not None:
                events = self._send_direct(events)
                if not events:
                    return
            encoded = sum(1 for e in events if e[0] == ENCODED)
        elif any(e[0] in (TASK_RUNS_CREATED, FANOUT_CREATED) and len(e[2]) >= PROCESS_AT for e in events):
            self._became_large()
        with self._cond:
            self._pending.extend(events)
            self._received += len(events)
            self._pending_encoded += encoded
            self._cond.notify()

    def _send_direct(self, events: list[RunEvent]) -> list[RunEvent]:
        """Send the encoded task-run rows of `events` to the writer process now; the events left for the writer
        thread. Only when the process is ready and healthy and the writer thread is not sending (`_order`, never
        waited for here: the rows then go the writer thread's way). Encoded rows waiting for the writer thread
        are older: they go first, in the same frame."""
        from .writer_process import WriterProcessError

        proc = self._process
        if proc is None or not proc.ready or not self._direct_ok:
            return events
        chunks = [e[2] for e in events if e[0] == ENCODED]
        if not chunks or not self._order.acquire(blocking=False):
            return events
        try:
            if not self._direct_ok or self._held is not None or self._process is not proc:
                return events
            older: list[Any] = []
            if self._pending_encoded:
                with self._cond:
                    older = [e[2] for e in self._pending if e[0] == ENCODED]
                    self._pending = [e for e in self._pending if e[0] != ENCODED]
                    self._done += len(older)  # handed on: the frame's answer is what flush() waits for now
                    self._pending_encoded = 0
            entries = [(when, flat, count) for _, flat, count, when in (*older, *chunks)]
            frames: list[Batch] = []  # about ENCODE_CHUNK runs each: one frame's pickle at a time in memory
            size = 0
            for entry in entries:
                if not frames or size + entry[2] > ENCODE_CHUNK:
                    frames.append(Batch())
                    size = 0
                frames[-1].compact.append(entry)
                size += entry[2]
            for i, batch in enumerate(frames):
                self._direct_sent += 1  # before the send: its answer may come before send() returns
                try:
                    proc.send(batch, tag=batch)
                except WriterProcessError:  # it ended: this frame and the rest are kept as the newest of its
                    for later in frames[i + 1:]:  # frames, written by the writer thread
                        batch.compact.extend(later.compact)
                    with self._cond:
                        self._direct_answered += 1
                        self._returned[proc.last_seq + 1] = batch
                        self._direct_ok = False
                        self._cond.notify_all()
                    break
            return [e for e in events if e[0] != ENCODED]
        finally:
            self._order.release()

    def _on_reply(self, seq: int, tag: Any, reply: tuple[Any, ...]) -> None:
        """The writer process answered frame `seq` (its reader thread). A direct batch it did not write is kept
        (`_returned`), and no more go direct until the writer thread has written it."""
        if reply[0] == "ok":
            if tag is not None:
                self._direct_answered += 1  # no lock, no wake-up: flush() polls
            return
        with self._cond:
            self._direct_ok = False
            if reply[0] != "dead":
                self._child_failed = True
            if tag is not None:
                self._returned[seq] = tag
                self._direct_answered += 1
            self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait (at most `timeout` s) until every event handed so far is written. False if not all were."""
        # bounded even when asked to wait for ever: a database that does not answer never holds a flow's end
        deadline = time.monotonic() + (FLUSH_MAX if timeout is None else timeout)
        with self._cond:
            target = self._received
            failures_at_start = self._failures
            self._flush_requested = True
            self._cond.notify_all()  # a writer waiting to retry retries now
            while self._done < target or self._unwritten():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if self._failing_since is not None and self._failures > failures_at_start:
                    break  # the database is still away (a retry made during this flush failed): do not wait
                self._cond.wait(min(left, 0.05))
            ok = self._done >= target and not self._unwritten()
            waiting = max(0, target - self._done)
            held = (len(self._held) if self._held is not None else 0) + sum(len(b) for b in self._returned.values())
        if not ok:
            _log.warning("The run store (%s) has not yet written %d rows and %d run events; they are kept and "
                         "written when the database can be reached again.", self._where(), held, waiting)
        return ok

    def _unwritten(self) -> bool:
        """Rows not written besides the events waiting: kept after a failure, sent and not answered, or waiting
        for their run's news (called with the lock held)."""
        return (self._held is not None or bool(self._returned) or self._direct_sent > self._direct_answered
                or bool(self._waiting) or bool(self._groups))

    def close(self, timeout: float | None = 10.0) -> bool:
        ok = self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=1.0)
        if self._process is not None and not self._thread.is_alive():
            self._process.close()  # what it did not write comes back (`_returned`)
            self._process = None
        if self._returned and not self._thread.is_alive():
            self._held = self._with_returned(self._held or Batch(), None)
            ok = False
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

            with self._storage_lock:  # the writer thread, and a delivering thread starting the writer process
                if self._storage is None:
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
                while not self._pending and self._held is None and not self._returned and not self._closed:
                    if self._waiting or self._groups:  # rows held back: written after their delay, or at a flush
                        if not self._flush_requested:
                            self._cond.wait(WRITE_INTERVAL)
                        break
                    self._cond.wait()
                # Coalesce: a run created, started and finished within one interval is one row built and
                # written once, and the writer competes less with a busy flow for the interpreter.
                began = time.monotonic()
                while (not self._flush_requested and not self._closed and len(self._pending) < WRITE_AT
                       and self._held is None and not self._returned
                       and (self._large or len(self._pending) < PROCESS_AT)):
                    left = began + self._interval - time.monotonic()  # shorter once a writer process writes
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if (self._closed and not self._pending and self._held is None and not self._waiting
                        and not self._groups and not self._returned):
                    return
            with self._order:  # rows reach the writer process in the order they were made
                with self._cond:
                    events, self._pending = self._pending, []
                    self._pending_encoded = 0
                    force = self._flush_requested or self._closed
                    self._flush_requested = False
                if self._returned:  # direct rows the process did not write: kept, then retried with the rest
                    self._hold(self._held or Batch(), None)
                # a held batch stays `_held` until it is written, so flush() never reports it done early
                batch = self._held if self._held is not None else Batch()
                try:
                    self._convert(events, batch, force)
                except Exception:
                    _log.exception("The run store could not record %d run events; they are lost.", len(events))
                    self._lost += len(events)
                if self._large and self._process is None and not self._process_failed:
                    self._start_process()  # large from this batch's task runs on (a large creation: `handle`)
                seq = self._send(batch) if len(batch) else None
            ok = True
            if len(batch):
                ok, batch = self._write(batch, seq)
            if not ok:
                self._hold(batch, seq)
                with self._cond:
                    self._swap_waiting()
                    self._done += len(events)  # kept: counted as handled so flush() reports them as held
                    self._cond.notify_all()
                    if self._closed:
                        return
                    self._cond.wait(delay)
                delay = min(delay * 2, RETRY_MAX_DELAY)
                continue
            delay = 0.1
            with self._cond:
                self._swap_waiting()
                self._held = None
                if not self._returned:
                    self._direct_ok = True
                self._done += len(events)
                self._cond.notify_all()

    def _became_large(self) -> None:
        """A large .map() was created: its writer process is started now, in the delivering thread (a task thread
        or the dispatcher), not when the writer thread next gets the interpreter, which under the map's threads
        is seconds later. The process imports and opens the database meanwhile, on another core."""
        self._large = True
        if self._process is None and not self._process_failed:
            self._start_process()

    def _swap_waiting(self) -> None:
        """What waits after this batch (called with the lock held, once the batch is written or held)."""
        self._waiting, self._since = self._next_waiting, self._next_since
        self._groups = self._next_groups

    def _start_process(self) -> None:
        """Start the writer process, if the store is a SQLite file (any other store is written here). It starts
        while this batch is made; its first write waits until it is ready. Once per sink, from any thread."""
        from .writer_process import WriterProcess

        with self._process_lock:
            if self._process is not None or self._process_failed:
                return
            self._start_process_locked(WriterProcess)

    def _start_process_locked(self, WriterProcess: Any) -> None:
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
            self._process = WriterProcess(path, on_reply=self._on_reply)
            self._interval = PROCESS_WRITE_INTERVAL
        except Exception as exc:  # never a reason to lose a record: this process writes them
            self._process_failed = True
            _log.warning("The run store's writer process could not be started (%r); this process writes its run "
                         "records itself.", exc)

    def _send(self, batch: Batch) -> int | None:
        """Send `batch` to the writer process (the caller holds `_order`); its frame number, or None if it is to
        be written in this process."""
        from .writer_process import WriterProcessError

        proc = self._process
        if proc is None:
            return None
        try:
            proc.wait_ready()
            if self._child_failed:  # it skips frames since a failed write: this one carries the rows kept
                proc.resume()
                self._child_failed = False
            return proc.send(batch, wait=True)
        except WriterProcessError as exc:
            self._drop_process(proc, exc)
            return None

    def _drop_process(self, proc: Any, exc: Exception) -> None:
        """The writer process is gone or failed: this process writes its rows from now on."""
        self._process, self._process_failed, self._interval = None, True, WRITE_INTERVAL
        _log.warning("%s", exc)
        proc.close(1.0)  # frames still in flight are answered, and come back if direct (`_returned`)

    def _write(self, batch: Batch, seq: int | None = None) -> tuple[bool, Batch]:
        """Write `batch` (sent as frame `seq`, or here if None); whether it was written, and the batch to keep
        if not (with the direct rows that came back, in order, when the process went away)."""
        from .writer_process import WriterProcessError

        try:
            proc = self._process
            if seq is not None and proc is not None:
                try:
                    proc.check(proc.wait(seq))
                    return self._written(), batch
                except WriterProcessError as exc:
                    self._drop_process(proc, exc)
                    seq = None
            if self._returned:
                batch = self._with_returned(batch, seq)
            self.storage().write(batch)
        except Exception as exc:
            with self._cond:
                self._failures += 1
                self._cond.notify_all()
            if self._failing_since is None:
                self._failing_since = time.monotonic()
                _log.warning("The run store (%s) cannot be written (%s); keeping %d rows and retrying. Flows go "
                             "on running.", self._where(), str(exc).splitlines()[0][:300], len(batch))
            return False, batch
        return self._written(), batch

    def _written(self) -> bool:
        if self._failing_since is not None:
            _log.warning("The run store (%s) is writable again after %.1f s; the rows kept meanwhile are written.",
                         self._where(), time.monotonic() - self._failing_since)
            self._failing_since = None
            self._replay_spool()
        return True

    def _with_returned(self, batch: Batch, seq: int | None) -> Batch:
        """`batch` (frame `seq`; None: newer than any frame) and the direct batches that came back, in frame
        order, once no frame is in flight."""
        proc = self._process
        if proc is not None:
            proc.wait_idle(10.0)
        with self._cond:
            returned, self._returned = self._returned, {}
        if not returned:
            return batch
        parts = sorted(returned.items())
        at = len(parts) if seq is None else sum(1 for s, _ in parts if s < seq)
        parts.insert(at, (seq or 0, batch))
        merged = Batch()
        for _, part in parts:
            merged.merge(part)
        return merged

    def _hold(self, batch: Batch, seq: int | None = None) -> None:
        self._held = self._with_returned(batch, seq)
        with self._cond:
            self._direct_ok = False  # until the rows kept are written
        if len(self._held) > MAX_HELD:
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
    def _encode(self, events: Sequence[RunEvent]) -> list[RunEvent]:
        """A large delivery with the task runs' states made compact here, in the delivering thread (one of a busy
        .map()'s task threads, which hold the interpreter; the writer thread gets a small share of it among them
        and would encode them only once the map is over): one ENCODED event per delivery, after the rest. The
        runs' creation stays an event of its own, for `_hold_back`."""
        task_runs: dict[Any, Any] = {}
        rest: list[RunEvent] = []
        for event in events:
            kind, run, payload = event
            if kind in (STATE_CHANGED, FINISHED, RUN_FINISHED):
                if run.__class__ is FlowRun:
                    rest.append(event)
                else:
                    task_runs[run] = payload
            elif kind == STATES_CHANGED:
                flows = [(r, sts) for r, sts in payload if r.__class__ is FlowRun]
                if flows:
                    rest.append((kind, run, flows))
                for r, sts in payload:
                    if sts and r.__class__ is not FlowRun:
                        task_runs[r] = sts[-1]
            elif kind == FANOUT_SETTLED:  # no records: encoded from the fan-out's columns and the batch's times
                fan, lo, starts, ends = payload
                for at in range(0, len(ends), ENCODE_CHUNK):
                    flat: Any = compact_fanout(fan, lo + at, None, starts[at:at + ENCODE_CHUNK],
                                               ends[at:at + ENCODE_CHUNK])
                    if self._process is not None:
                        flat = pickle.dumps(flat, protocol=pickle.HIGHEST_PROTOCOL)
                    rest.append((ENCODED, None, ([], flat, min(ENCODE_CHUNK, len(ends) - at), time.time())))
            else:
                if kind in (TASK_RUNS_CREATED, FANOUT_CREATED) and len(payload) >= PROCESS_AT and not self._large:
                    self._became_large()
                rest.append(event)
        if task_runs:
            if len(task_runs) >= PROCESS_AT:
                self._large = True
            now, pickled = time.time(), self._process is not None
            if len(task_runs) <= ENCODE_CHUNK:
                parts: Any = [task_runs]
            else:  # a cluster's delivery may hold 10^5 runs: chunks, so one chunk's encoding is in memory at once
                items = iter(task_runs.items())
                parts = iter(lambda: dict(islice(items, ENCODE_CHUNK)), {})
            for part in parts:
                flat: Any = compact_task_runs(part.items())
                if pickled:  # pickled now: bytes, which the collector never traverses, go as they are
                    flat = pickle.dumps(flat, protocol=pickle.HIGHEST_PROTOCOL)
                rest.append((ENCODED, None, (list(part), flat, len(part), now)))
        return rest

    def _convert(self, events: Sequence[RunEvent], batch: Batch, force: bool = True) -> None:
        # A run's row is built once per batch from its last state (a .map() run changes state three times or
        # more per batch); a flow run's history goes in as one state row per change, a task run's is a column
        # of its row, encoded compact (`batch.compact_task_runs`) and made a row where it is written. No container
        # per task run is made here: runs map to states, in dicts. A large delivery comes encoded already
        # (ENCODED, see `_encode`): nothing is done here per run of it, the writer thread's share of the
        # interpreter under a busy map is small.
        task_flow = self._task_flow
        flow_runs: dict[Any, tuple[Any, Any]] = {}
        task_runs: dict[Any, Any] = {}  # task run record (an identity hash) -> the state to write
        # unchanged if this conversion fails
        self._next_waiting, self._next_since = self._waiting, self._since
        self._next_groups = self._groups
        created: dict[Any, Any] = {}  # task runs created in this batch (a small creation) -> their first state
        groups = list(self._groups)   # large creations waiting: (their runs, since when)
        chunks: list[tuple[float, list[Any], int]] = []  # the ENCODED chunks, in order
        states = batch.states
        for kind, run, payload in events:
            if kind == ENCODED:
                runs, flat, count, when = payload
                if task_runs or created:  # news of these runs seen earlier in this batch is older: dropped
                    for r in runs:
                        task_runs.pop(r, None)
                        created.pop(r, None)
                chunks.append((when, flat, count))
            elif kind in (STATE_CHANGED, FINISHED):
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
            elif kind == FANOUT_CREATED:  # waits as one large creation does; what is still Pending when its time
                if len(payload) >= PROCESS_AT:  # comes is encoded from the fan-out (`_hold_back`)
                    self._large = True
                groups.append((payload, time.monotonic()))
            elif kind == FANOUT_SETTLED:
                fan, lo, starts, ends = payload
                chunks.append((time.time(), compact_fanout(fan, lo, None, starts, ends), len(ends)))
            elif kind == TASK_RUNS_CREATED:
                self._created.append(payload)
                if len(payload) >= PROCESS_AT:
                    self._large = True
                    groups.append((payload, time.monotonic()))  # waits as one, nothing done per run now
                    continue
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
        chunks[:0] = self._hold_back(task_runs, created, force, groups)
        for run, state in flow_runs.values():
            batch.flow_runs[str(run.id)] = flow_run_row(run, state, now)
        batch.compact.extend(chunks)  # older than any state left in task_runs (those came after their chunk)
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

    def _hold_back(self, task_runs: dict[Any, Any], created: dict[Any, Any], force: bool,
                   groups: list[tuple[Sequence[Any], float]]) -> list[tuple[float, list[Any], int]]:
        """Take the task runs whose only news is their creation out of `task_runs`, to wait (`_next_waiting`,
        since `_next_since`) until they have waited PENDING_DELAY or a flush comes; put back into it those that
        waited long enough. `_waiting` changes only once the rows of this batch are written or held, so a flush
        never sees a row neither waiting nor written. Costs what this batch brought, not what waits: the
        waiting runs are in the order they began waiting. A large creation waits as one (`groups`, to become
        `_next_groups`): when its time comes, the runs still in their first state get their row.

        A run that has moved on needs no creation row: its news is on its way (in this batch, in an encoded
        chunk sent straight to the writer process, or in an event to come), and whatever carries it is written
        after the batch this conversion makes (`_order`).

        A compact .map()'s creation waits the same way; its runs without a record that are still Pending come
        back encoded, to be written first (the list returned)."""
        waiting = self._waiting
        clock = time.monotonic()
        left = []
        pending: list[tuple[float, list[Any], int]] = []
        for runs, t in groups:
            if force or clock - t >= PENDING_DELAY:
                unsettled = getattr(runs, "unsettled", None)  # a compact .map() (`engine.fanout.Fanout`)
                if unsettled is not None:
                    spans, records = unsettled()
                    pending.extend((time.time(), compact_fanout(runs, lo, hi), hi - lo) for lo, hi in spans)
                else:
                    records = runs
                for run in records:
                    if len(run.state_history) <= 1 and run not in task_runs:
                        task_runs[run] = run.state_history[0] if run.state_history else run.state
            else:
                left.append((runs, t))
        self._next_groups = left
        if force:
            for run, state in waiting.items():
                if len(run.state_history) <= 1:
                    task_runs.setdefault(run, state)
            self._next_waiting, self._next_since = {}, {}
            return pending
        keep, since = waiting.copy(), self._since.copy()
        if keep:
            for run in [r for r in keep if r not in task_runs and len(r.state_history) > 1]:
                del keep[run], since[run]  # its news is on its way
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
            if task_runs.get(run) is state:
                keep[run] = state
                since[run] = clock
                del task_runs[run]
        self._next_waiting, self._next_since = keep, since
        return pending


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
