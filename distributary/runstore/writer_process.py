"""A writer process for the SQLite run store: the sink of a flow that records many runs hands it its batches
(pickled, task runs compact) over a pipe, and it makes the rows and writes them, on another core than the flow's.

Frames are numbered and answered in order, one reply per frame, after the transaction that holds it. A sender
need not wait: `send(batch)` returns the frame's number once it is in the pipe (the sink's delivering thread
sends a large `.map()`'s rows this way while the map runs, see `sink.RunStoreSink._send_direct`), `wait(seq)`
returns its reply, and `write(batch)` is both (a flush at the flow's end still means "readable now" from any
process). The child reads frames ahead of its writes and writes all it holds in one transaction.

A database error in the child comes back as `("error", class name, message)` (`write` raises the same `sqlite3`
error class, and the sink keeps the rows and retries, as in-process). After an error the child writes nothing
until it is told to `resume()`: every frame sent meanwhile is answered `("skipped",)` and stays with its sender,
so rows never reach the database out of their order. A child that ended answers every frame in flight
`("dead", message)`; `write` raises `WriterProcessError`, on which the sink writes in its own process.

Run as `python -m distributary.runstore.writer_process PATH` (the parent starts it lighter, `_BOOT`): frames on
stdin and stdout, each an 8-byte length and a pickle; the first frame out says it is ready (or why it cannot
write PATH).
"""
from __future__ import annotations

import gc
import os
import pickle
import queue
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ..errors import DistributaryError
from .batch import Batch

START_TIMEOUT = 30.0  # seconds the child may take to start (an import under a loaded machine)
MERGE_MAX = 64        # frames the child writes in one transaction at most
CHECKPOINT_PAGES = 25_000  # WAL pages (about 100 MB) past which a commit of the child checkpoints (SQLite: 1,000)
IDLE_CHECKPOINT = 0.2  # seconds without a frame after which the child checkpoints what it wrote


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


PIPE_SIZE = 16 << 20  # bytes the pipe to the child holds (Linux; capped by the system): a sender seldom waits


def _widen(pipe: Any) -> None:
    """A larger pipe buffer, so a frame is written without waiting for the child's reader thread to get its
    interpreter at each 64 KiB (a delivering task thread sends frames while the map runs). Best effort."""
    import fcntl

    setsize = getattr(fcntl, "F_SETPIPE_SZ", None)
    if pipe is None or setsize is None:
        return
    for size in (PIPE_SIZE, 1 << 20):
        try:
            fcntl.fcntl(pipe.fileno(), setsize, size)
            return
        except OSError:
            continue


_MISSING = object()
Reply = tuple[Any, ...]  # ("ok",) | ("error", sqlite3 class name, message) | ("skipped",) | ("failed", name, message)
#                          | ("dead", message)


# The child's start: the two packages on its way stand in as bare packages, so it imports what it writes with
# (batch, sqlite_writer, settings: 0.05 s) and not `distributary/__init__` (the engine, asyncio: twice as long, and
# the rows of a large map wait for it). A test checks it still starts and writes.
_BOOT = """
import os, sys, types
package = sys.argv[1]
for name, where in (("distributary", package), ("distributary.runstore", os.path.join(package, "runstore"))):
    module = types.ModuleType(name)
    module.__path__ = [where]
    sys.modules[name] = module
from distributary.runstore.writer_process import main
sys.exit(main(sys.argv[2]))
"""


class WriterProcess:
    """The parent's end: `send` / `wait` / `write`, `resume`, `close`. `on_reply(seq, tag, reply)`, if given, is
    called (in the reader thread) for every frame answered, with the `tag` it was sent with."""

    def __init__(self, path: str, on_reply: Callable[[int, Any, Reply], None] | None = None):
        self.path = path
        self.url = f"sqlite:///{path}"
        package = str(Path(__file__).resolve().parents[1])  # the child imports this same distributary
        # its own session: a Ctrl-C in the terminal stops the flow, whose sink then flushes through the child
        self._proc = subprocess.Popen([sys.executable, "-c", _BOOT, package, path], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, start_new_session=True)
        _widen(self._proc.stdin)
        self._on_reply = on_reply
        # No lock is shared with the reader thread: under a busy map's task threads it gets a small share of the
        # interpreter, and a sender waiting for a lock it holds would wait for that share (dict operations and
        # events are atomic enough).
        self._send_lock = threading.Lock()  # senders are serialised by the sink already: never contended
        self._seq = 0
        self._inflight: dict[int, Any] = {}  # frame -> its tag
        self._waiters: dict[int, threading.Event] = {}  # frames someone waits for (`wait`)
        self._replies: dict[int, Reply] = {}
        self._ready = threading.Event()
        self._dead: str | None = None  # why the child cannot be used
        self._reader = threading.Thread(target=self._read, name="distributary-runstore-writer-replies",
                                        daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def ready(self) -> bool:
        """The child has opened the database and reads frames."""
        return self._ready.is_set() and self._dead is None

    @property
    def last_seq(self) -> int:
        """The number of the last frame sent."""
        return self._seq

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def _fail(self, what: str) -> WriterProcessError:
        code = self._proc.poll()
        ended = f"it ended with exit code {code}" if code is not None else "it is still running"
        return WriterProcessError(f"The run store's writer process (pid {self._proc.pid}) {what} ({ended}); this "
                                  f"process writes its run records itself.")

    # -- the reader thread -------------------------------------------------------------------------------------
    def _read(self) -> None:
        out = self._proc.stdout
        assert out is not None
        why = "stopped answering"
        try:
            status = _recv(out)
            if status[0] != "ready":
                why = f"could not open the database: {status[1]}"
                return
            self._ready.set()
            while True:
                seq, reply = _recv(out)
                self._answer(seq, reply)
        except (OSError, EOFError, pickle.UnpicklingError, ValueError) as exc:
            why = f"stopped answering: {exc}"
        finally:
            self._dead = why
            for seq in sorted(list(self._inflight)):
                self._answer(seq, ("dead", why))
            self._ready.set()  # nobody waits for a start that will not come

    def _answer(self, seq: int, reply: Reply) -> None:
        tag = self._inflight.pop(seq, _MISSING)
        if tag is _MISSING:
            return
        waiter = self._waiters.get(seq)
        if waiter is not None:
            self._replies[seq] = reply
            waiter.set()
        if self._on_reply is not None:
            self._on_reply(seq, tag, reply)

    # -- sending -----------------------------------------------------------------------------------------------
    def send(self, batch: Batch, wait: bool = False, tag: Any = None) -> int:
        """Put `batch` in the pipe; its number (frames are answered in that order). Raises WriterProcessError if
        the child has ended already (a pipe that breaks now answers the frame "dead"). `wait`: the reply will be
        asked for with `wait(seq)`; `tag`: for `on_reply`."""
        stdin = self._proc.stdin
        assert stdin is not None
        with self._send_lock:
            if self._dead is not None:
                raise self._fail(self._dead)
            self._seq += 1
            seq = self._seq
            if wait:
                self._waiters[seq] = threading.Event()
            self._inflight[seq] = tag
            try:
                _send(stdin, ("batch", seq, batch.to_dict()))
            except (OSError, ValueError) as exc:  # answered as a frame of a dead child: its sender keeps it
                self._answer(seq, ("dead", f"its pipe is closed: {exc}"))
        return seq

    def resume(self) -> None:
        """Let the child write again after an error (the frames it skipped are sent again by their sender)."""
        stdin = self._proc.stdin
        assert stdin is not None
        with self._send_lock:
            try:
                _send(stdin, ("resume",))
            except (OSError, ValueError) as exc:
                raise self._fail(f"stopped taking batches: {exc}") from exc

    def wait(self, seq: int, timeout: float | None = None) -> Reply:
        """The reply to frame `seq` (sent with `wait=True`); ("dead", ...) if it does not come in `timeout`."""
        waiter = self._waiters[seq]
        got = waiter.wait(timeout)
        del self._waiters[seq]
        return self._replies.pop(seq) if got else ("dead", f"no answer in {timeout} s")

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every frame sent is answered; False on the timeout."""
        deadline = time.monotonic() + timeout
        while self._inflight:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def wait_ready(self) -> None:
        """Wait (START_TIMEOUT at most) until the child reads frames; WriterProcessError if it will not."""
        if not self._ready.wait(START_TIMEOUT):
            raise self._fail(f"did not start in {START_TIMEOUT:.0f} s")
        if self._dead is not None:
            raise self._fail(self._dead)

    def write(self, batch: Batch) -> None:
        """Send `batch` and wait until it is committed."""
        self.wait_ready()
        self.check(self.wait(self.send(batch, wait=True)))

    def check(self, reply: Reply) -> None:
        """Nothing if the frame was written; else the error, as `write` raises it."""
        if reply[0] == "ok":
            return
        if reply[0] == "dead":
            raise self._fail(reply[1])
        if reply[0] == "skipped":
            raise sqlite3.OperationalError("the batch before it could not be written")
        cls = getattr(sqlite3, reply[1], None) if reply[0] == "error" else None
        if not (isinstance(cls, type) and issubclass(cls, sqlite3.Error)):
            raise self._fail(f"failed ({reply[-1]})")
        raise cls(reply[2])  # a database error: the same class as in-process, so the sink retries it

    def close(self, timeout: float = 5.0) -> None:
        """End the child (it writes what it holds and stops at the end of its input) and wait for it; kill it if
        it does not stop. Frames it did not answer are answered ("dead", ...)."""
        try:
            if self._proc.stdin is not None:
                with self._send_lock:
                    self._proc.stdin.close()
        except OSError:
            pass
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout)
        self._reader.join(timeout)
        if self._proc.stdout is not None:
            self._proc.stdout.close()


# ---------------------------------------------------------------------------------------------------------------
# The child
# ---------------------------------------------------------------------------------------------------------------
def _read_frames(inp: IO[bytes], frames: queue.SimpleQueue[Any]) -> None:
    """Read frames as they come (so the parent's sends do not wait while a transaction runs); None at the end."""
    try:
        while True:
            frames.put(_recv(inp))
    except (OSError, EOFError, pickle.UnpicklingError):
        frames.put(None)


def main(path: str) -> int:
    from .sqlite_writer import NotAtHead, SqliteWriter

    out, inp = sys.stdout.buffer, sys.stdin.buffer
    sys.stdout = sys.stderr  # nothing else may write into the frames
    try:
        writer = SqliteWriter(path)
    except (NotAtHead, sqlite3.Error) as exc:
        _send(out, ("failed", str(exc)))
        return 1
    # A large .map()'s rows are checkpointed from the WAL into the database once the frames stop coming, not at
    # each 1,000 pages: a third of the write's time, the hot pages (the indexes' last ones) copied again and again
    writer.defer_checkpoints(CHECKPOINT_PAGES)
    unchecked = False  # rows written since the last checkpoint
    # the only objects alive are the batches in hand: collecting while they are made would trace them again and again
    gc.disable()
    frames: queue.SimpleQueue[Any] = queue.SimpleQueue()
    threading.Thread(target=_read_frames, args=(inp, frames), daemon=True).start()
    _send(out, ("ready", os.getpid()))
    failed = False  # since a write failed, until the parent says resume: frames are skipped, not written
    ended = False
    while not ended:
        try:
            first = frames.get(timeout=IDLE_CHECKPOINT) if unchecked else frames.get()
        except queue.Empty:
            writer.checkpoint()
            unchecked = False
            continue
        held = [first]
        while len(held) < MERGE_MAX:  # all that came meanwhile, in one transaction
            try:
                held.append(frames.get_nowait())
            except queue.Empty:
                break
        todo: list[tuple[int, Any]] = []
        for frame in held:
            if frame is None:
                ended = True
                break
            if frame[0] == "resume":
                _write(writer, todo, failed, out)
                todo, failed = [], False
            else:
                todo.append((frame[1], frame[2]))
        unchecked = unchecked or bool(todo)
        failed = _write(writer, todo, failed, out)
        del held, todo
        gc.collect()
    writer.close()
    return 0


def _write(writer: Any, todo: list[tuple[int, Any]], failed: bool, out: IO[bytes]) -> bool:
    """Write the frames `todo` in one transaction and answer each; whether the child is failed afterwards."""
    if not todo:
        return failed
    if failed:
        reply: Reply = ("skipped",)
    else:
        batch = Batch.from_dict(todo[0][1])
        for _, data in todo[1:]:
            batch.merge(Batch.from_dict(data))
        try:
            writer.write(batch)
            reply = ("ok",)
        except sqlite3.Error as exc:
            reply, failed = ("error", type(exc).__name__, str(exc)), True
        except Exception as exc:  # reported to the parent, which writes the batch itself
            reply, failed = ("failed", type(exc).__name__, f"{type(exc).__name__}: {exc}"), True
    for seq, _ in todo:
        _send(out, (seq, reply))
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
