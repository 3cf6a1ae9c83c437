"""Helpers for tests that start processes of ours (serve(), workers): wait for a condition, stop by pid."""
from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from typing import Any


def wait_for(cond: Callable[[], Any], timeout: float = 60.0, what: str = "condition", every: float = 0.1) -> Any:
    """Poll `cond` until it returns something true (returned), or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (got := cond()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)
    return got


def stop_all(procs: Iterable[subprocess.Popen], timeout: float = 30.0) -> None:
    """SIGTERM each process still running (a graceful stop), SIGKILL any that has not ended after `timeout`."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
