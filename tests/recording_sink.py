"""A run-event sink for tests: keeps every event it is handed, in order (register with `recording()`)."""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from distributary.engine import transitions


class RecordingSink:
    """Keeps (kind, run, payload, state name) for every event; the state name is copied at `handle` time."""

    kinds: frozenset[str] | None = None

    def __init__(self) -> None:
        self.events: list[tuple[str, Any, Any]] = []
        self._lock = threading.Lock()

    def handle(self, events: Sequence[tuple[str, Any, Any]]) -> None:
        with self._lock:
            self.events.extend(events)

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def close(self) -> None:
        pass

    def of(self, kind: str) -> list[tuple[str, Any, Any]]:
        with self._lock:
            return [e for e in self.events if e[0] == kind]

    def states_of(self, run: Any) -> list[str]:
        """The names of the states the sink saw applied to `run`, in order."""
        with self._lock:
            return [e[2].name for e in self.events if e[0] == "state_changed" and e[1] is run]


@contextlib.contextmanager
def recording() -> Iterator[RecordingSink]:
    sink = RecordingSink()
    transitions.add_sink(sink)
    try:
        yield sink
    finally:
        transitions.remove_sink(sink)
