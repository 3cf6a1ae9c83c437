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


def max_overlap(spans: Iterable[tuple[float, float]]) -> int:
    """The most (start, end) intervals open at one instant (an end at the same instant as a start comes first)."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    now = peak = 0
    for _, d in events:
        now += d
        peak = max(peak, now)
    return peak


# A process that waits for the file argv[1], then holds the limit "db" argv[3] times for 0.1 s each, and writes
# the (start, end) of each hold to argv[2] as JSON.
CONCURRENCY_CONTENDER = """
import json, os, sys, time
from distributary.concurrency.sync import concurrency
go, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
while not os.path.exists(go):
    time.sleep(0.005)
spans = []
for _ in range(n):
    with concurrency("db", timeout_seconds=120):
        start = time.time()
        time.sleep(0.1)
        spans.append((start, time.time()))
with open(out, "w") as fh:
    json.dump(spans, fh)
"""
