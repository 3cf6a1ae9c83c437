"""A writer process for the SQLite run store: the sink of a flow that records many runs hands it its batches
(pickled, task runs compact) over a pipe, and it makes the rows and writes them, on another core than the flow's.

`WriterProcess.write(batch)` returns once the batch is committed (the child acknowledges each batch after its
transaction), so a flush at the flow's end still means "readable now" from any process. A database error in the
child comes back as the same `sqlite3` error class (the sink keeps the rows and retries, as in-process); a child
that ended is a `WriterProcessError`, on which the sink writes in its own process from then on.

Run as `python -m distributary.runstore.writer_process PATH`: frames on stdin and stdout, each an 8-byte length
and a pickle; the first frame out says it is ready (or why it cannot write PATH).
"""
from __future__ import annotations

import gc
import os
import pickle
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from ..errors import DistributaryError
from .batch import Batch

START_TIMEOUT = 30.0  # seconds the child may take to start (an import under a loaded machine)


class WriterProcessError(DistributaryError, RuntimeError):
    """The run store's writer process ended or cannot write: the sink writes in its own process instead."""


def _send(out: IO[bytes], obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(len(data).to_bytes(8, "little"))
    out.write(data)
    out.flush()


def _recv(inp: IO[bytes]) -> Any:
    head = inp.read(8)
    if len(head) < 8:
        raise EOFError("the pipe was closed")
    size = int.from_bytes(head, "little")
    data = inp.read(size)
    if len(data) < size:
        raise EOFError("the pipe was closed mid-frame")
    return pickle.loads(data)


class WriterProcess:
    """The parent's end: `write(batch)` (blocks until committed), `close()`."""

    def __init__(self, path: str):
        self.path = path
        self.url = f"sqlite:///{path}"
        root = str(Path(__file__).resolve().parents[2])  # the child imports this same distributary
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        # its own session: a Ctrl-C in the terminal stops the flow, whose sink then flushes through the child
        self._proc = subprocess.Popen([sys.executable, "-m", __name__, path], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, env=env, start_new_session=True)
        self._ready = False
        self._lock = threading.Lock()

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _fail(self, what: str, exc: BaseException | None = None) -> WriterProcessError:
        code = self._proc.poll()
        ended = f"it ended with exit code {code}" if code is not None else "it is still running"
        return WriterProcessError(f"The run store's writer process (pid {self._proc.pid}) {what} ({ended}"
                                  f"{f': {exc}' if exc else ''}); this process writes its run records itself.")

    def write(self, batch: Batch) -> None:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        with self._lock:
            try:
                if not self._ready:
                    status = _recv(self._proc.stdout)
                    if status[0] != "ready":
                        raise self._fail("could not open the database", status[1])
                    self._ready = True
                _send(self._proc.stdin, batch.to_dict())
                reply = _recv(self._proc.stdout)
            except (OSError, EOFError, pickle.UnpicklingError) as exc:
                raise self._fail("stopped answering", exc) from exc
        if reply[0] != "ok":  # a database error: the same class as in-process, so the sink retries it
            cls = getattr(sqlite3, reply[1], None) if reply[0] == "error" else None
            if not (isinstance(cls, type) and issubclass(cls, sqlite3.Error)):
                raise self._fail("failed", reply[2])
            raise cls(reply[2])

    def close(self, timeout: float = 5.0) -> None:
        """End the child (it stops at the end of its input) and wait for it; kill it if it does not stop."""
        try:
            if self._proc.stdin is not None:
                self._proc.stdin.close()
        except OSError:
            pass
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout)
        if self._proc.stdout is not None:
            self._proc.stdout.close()


def main(path: str) -> int:
    from .sqlite_writer import NotAtHead, SqliteWriter

    out, inp = sys.stdout.buffer, sys.stdin.buffer
    sys.stdout = sys.stderr  # nothing else may write into the frames
    try:
        writer = SqliteWriter(path)
    except (NotAtHead, sqlite3.Error) as exc:
        _send(out, ("failed", str(exc)))
        return 1
    # the only objects alive are the batch in hand: collecting while it is made would trace it again and again
    gc.disable()
    _send(out, ("ready", os.getpid()))
    while True:
        try:
            data = _recv(inp)
        except EOFError:
            writer.close()
            return 0
        batch = Batch.from_dict(data)
        try:
            writer.write(batch)
            reply: tuple[Any, ...] = ("ok",)
        except sqlite3.Error as exc:
            reply = ("error", type(exc).__name__, str(exc))
        except Exception as exc:  # reported to the parent, which writes the batch itself
            reply = ("failed", type(exc).__name__, f"{type(exc).__name__}: {exc}")
        del batch, data
        _send(out, reply)
        gc.collect()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
