"""A service: one function called every `interval` seconds on a daemon thread until stopped. A pass that fails is
logged and the next one runs (a database that is away for a while stops nothing for good)."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

_log = logging.getLogger("distributary.server.services")


class Service:
    """`fn(storage)` every `interval` seconds (the first pass at once)."""

    def __init__(self, name: str, fn: Callable[[Any], Any], interval: float):
        self.name = name
        self.fn = fn
        self.interval = interval
        self.passes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, storage_of: Callable[[], Any]) -> Service:
        self._thread = threading.Thread(target=self._loop, args=(storage_of,), name=f"distributary-{self.name}",
                                        daemon=True)
        self._thread.start()
        return self

    def _loop(self, storage_of: Callable[[], Any]) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                self.fn(storage_of())
            except Exception:  # logged, and the next pass tries again
                _log.exception("The server's %s pass failed; it runs again in %g s.", self.name, self.interval)
            self.passes += 1
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - t0)))

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


def start_services(storage_of: Callable[[], Any]) -> list[Service]:
    """The services the settings turn on (`DISTRIBUTARY_SERVER_SERVICES_*`), started."""
    from ... import settings
    from .scheduler import late_runs_pass, scheduler_pass

    out = []
    if settings.get("SERVER_SERVICES_SCHEDULER_ENABLED"):
        out.append(Service("scheduler", scheduler_pass, float(settings.get("SERVER_SERVICES_SCHEDULER_LOOP_SECONDS"))))
    if settings.get("SERVER_SERVICES_LATE_RUNS_ENABLED"):
        out.append(Service("late-runs", late_runs_pass, float(settings.get("SERVER_SERVICES_LATE_RUNS_LOOP_SECONDS"))))
    return [s.start(storage_of) for s in out]
