"""Executions counted per item with marker files (one empty file per execution, named `item.pid.random`), and a
killer that SIGKILLs the worker process that ran the newest one once enough items have run: the worker-death tests
of the process, Dask and Ray runners (test_process.py, test_mid_map_kills.py)."""
from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from pathlib import Path


def mark(dir_: str, x: int) -> None:
    Path(dir_, f"{x}.{os.getpid()}.{uuid.uuid4().hex[:8]}").touch()


def markers(dir_: Path) -> dict[int, list[int]]:
    """Item -> the pids of the processes that ran it, one per execution."""
    out: dict[int, list[int]] = {}
    for p in dir_.iterdir():
        x, pid, _ = p.name.split(".")
        out.setdefault(int(x), []).append(int(pid))
    return out


class KillAt:
    """A thread that waits until `count` items are marked in `dir_`, then SIGKILLs the process that marked the
    newest one (a worker, running); `killed` then holds its pid."""

    def __init__(self, dir_: Path, count: int):
        self.dir, self.count = dir_, count
        self.killed: list[int] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while len(os.listdir(self.dir)) < self.count:
            time.sleep(0.005)
        newest = max(self.dir.iterdir(), key=lambda p: p.stat().st_mtime_ns)
        pid = int(newest.name.split(".")[1])
        assert pid != os.getpid(), "the newest item ran in the driver, not in a worker"
        os.kill(pid, signal.SIGKILL)
        self.killed.append(pid)

    def join(self) -> int:
        self._thread.join(10)
        assert self.killed, "the worker was never killed"
        return self.killed[0]

