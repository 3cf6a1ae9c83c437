"""Telemetry between workers and the driver: log records, artifacts and live states of running task runs, batched.

Worker side: `TelemetrySender` (one per process, `telemetry_sender()`), fed by the log-forwarding handler and by
the live task runs; a backend sets its transport. Driver side: `TelemetryReceiver.handle(payload)`.
"""
from __future__ import annotations

import contextvars
import logging
import pickle
import threading
import time
from collections.abc import Callable
from typing import Any

from ... import states as S
from ...engine import transitions
from ...logging import ROOT, emit_remote, engine_logger, record_to_dict, setup_logging
from ...states import State

TELEMETRY_INTERVAL = 0.5  # seconds between two shipments of log records and live states from a worker process
_MAX_RECORDS_PER_MESSAGE = 500
LOG, STATE, ARTIFACT = "log", "state", "artifact"
_sender_lock = threading.Lock()

_channel: contextvars.ContextVar[str | None] = contextvars.ContextVar("distributary_channel", default=None)


def encode_telemetry(channel: str, records: list[tuple[str, Any]]) -> bytes:
    return pickle.dumps((channel, records), protocol=5)


def decode_telemetry(payload: bytes) -> tuple[str, list[tuple[str, Any]]]:
    return pickle.loads(payload)


class TelemetrySender:
    """Collects the log records and live states of the task runs running in this worker process and ships them
    with `transport(channel, payload)` at most every `interval` seconds and at the end of each batch.

    Live states are coalesced per run (only the latest goes out) and dropped once the run has finished: its
    final state travels with the batch's summary, so tiny task runs cost no telemetry at all.
    """

    def __init__(self, interval: float = TELEMETRY_INTERVAL):
        self.interval = interval
        self._transport: Callable[[str, bytes], None] | None = None
        self._lock = threading.Lock()
        self._logs: dict[str, list[dict[str, Any]]] = {}
        self._artifacts: dict[str, list[dict[str, Any]]] = {}
        self._states: dict[str, dict[int, State]] = {}
        self._current: dict[str, tuple[int, float]] = {}  # per channel, the tight loop's run: (id, start)
        self._thread: threading.Thread | None = None

    def set_transport(self, transport: Callable[[str, bytes], None]) -> None:
        self._transport = transport
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._loop, name="distributary-telemetry", daemon=True)
                    self._thread.start()

    def log(self, channel: str, record: dict[str, Any]) -> None:
        with self._lock:
            self._logs.setdefault(channel, []).append(record)

    def artifact(self, channel: str, data: dict[str, Any]) -> None:
        """An artifact event made by a task run here; it reaches the driver before the batch's outcome does."""
        with self._lock:
            self._artifacts.setdefault(channel, []).append(data)

    def state(self, channel: str, run_id: int, state: State) -> None:
        with self._lock:
            self._states.setdefault(channel, {})[run_id] = state

    def running(self, channel: str, run_id: int, start: float) -> None:
        """The tight loop's run `run_id` of this channel's batch started at `start`; until `idle`, `flush` ships
        it as a live Running state. One slot per channel and no lock: the batch's own thread is its only writer,
        and a slot is set and read whole."""
        self._current[channel] = (run_id, start)

    def idle(self, channel: str) -> None:
        """The run `running` named has ended."""
        self._current.pop(channel, None)

    def forget(self, channel: str, run_id: int) -> None:
        with self._lock:
            pending = self._states.get(channel)
            if pending:
                pending.pop(run_id, None)

    def flush(self, channel: str | None = None) -> None:
        """Ship what is buffered (for one channel, or all)."""
        transport = self._transport
        if transport is None:
            return
        with self._lock:
            channels = [channel] if channel is not None else list(set(self._logs) | set(self._states)
                                                                     | set(self._artifacts) | set(self._current))
            out = []
            for ch in channels:
                records: list[tuple[str, Any]] = [(LOG, r) for r in self._logs.pop(ch, ())]
                records.extend((ARTIFACT, a) for a in self._artifacts.pop(ch, ()))
                states = self._states.get(ch)
                if states:
                    records.extend((STATE, (rid, s.without_data())) for rid, s in states.items() if not s.is_final())
                    states.clear()
                current = self._current.get(ch)
                if current is not None:
                    records.append((STATE, (current[0], S.Running(timestamp=current[1]))))
                if records:
                    out.append((ch, records))
        for ch, records in out:
            for i in range(0, len(records), _MAX_RECORDS_PER_MESSAGE):
                try:
                    transport(ch, encode_telemetry(ch, records[i:i + _MAX_RECORDS_PER_MESSAGE]))
                except Exception as exc:  # telemetry is best effort; say so on the worker's own console
                    logging.getLogger(f"{ROOT}.telemetry").warning(
                        "Could not ship %d log/state records to the driver: %r", len(records), exc)

    def _loop(self) -> None:
        while True:
            time.sleep(self.interval)
            self.flush()


_sender: TelemetrySender | None = None


def forward_artifact(data: dict[str, Any]) -> bool:
    """Send an artifact event made inside a remote batch to the driver (which records it with the run's
    events); False outside a batch."""
    channel = _channel.get()
    if channel is None:
        return False
    telemetry_sender().artifact(channel, data)
    return True


def telemetry_sender() -> TelemetrySender:
    """This process's telemetry sender (backends set its transport before running a batch)."""
    global _sender
    if _sender is None:
        with _sender_lock:
            if _sender is None:
                _sender = TelemetrySender()
    return _sender


class _ForwardHandler(logging.Handler):
    """Sends distributary records made inside a batch to the driver."""

    def emit(self, record: logging.LogRecord) -> None:
        channel = _channel.get()
        if channel is not None:
            try:
                telemetry_sender().log(channel, record_to_dict(record))
            except Exception:
                self.handleError(record)


class _NotForwarded(logging.Filter):
    """On a worker's own console, leave out what goes to the driver (a LocalCluster's workers share the
    driver's terminal, so every line would otherwise show twice)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _channel.get() is None


_forward_handler = _ForwardHandler()
_not_forwarded = _NotForwarded()


def install_log_forwarding() -> None:
    """Forward distributary records made during batches to the driver (idempotent, cheap)."""
    setup_logging()  # the console handler must exist before it gets its filter
    logger = logging.getLogger(ROOT)
    if _forward_handler not in logger.handlers:
        logger.addHandler(_forward_handler)
    for h in logger.handlers:
        if getattr(h, "_distributary_console", False) and _not_forwarded not in h.filters:
            h.addFilter(_not_forwarded)


# ---------------------------------------------------------------------------------------------------------------
# Driver side
# ---------------------------------------------------------------------------------------------------------------
class TelemetryReceiver:
    """Takes in telemetry payloads (from any transport): re-emits log records on the driver's console, hands
    artifacts to the transition seam (the run store records them) and passes live states to
    `on_state(run_id_int, state)`. Payloads of other channels are ignored."""

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
            elif kind == ARTIFACT:
                transitions.artifact(data)



__all__ = ["TELEMETRY_INTERVAL", "LOG", "STATE", "ARTIFACT", "TelemetrySender", "telemetry_sender", "forward_artifact",
           "TelemetryReceiver", "encode_telemetry", "decode_telemetry", "install_log_forwarding"]
