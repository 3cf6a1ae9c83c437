"""`ProcessPoolTaskRunner`: task runs execute in this runner's own worker processes, as a backend of the remote
protocol (`runners/remote/`): the task is shipped once per worker, a `.map()` is packed into batches, log records
and live states come back as telemetry, and each run's outcome (with its value) comes back as soon as it finishes.
Tasks and arguments travel with cloudpickle, so tasks defined in `__main__` and closures work.

Worker processes are started with `mp_context` ("forkserver" where available, else "spawn"), run
`initializer(*initargs)` first, and then one batch at a time in their main thread: a timeout stops the work for
real (the main thread gets SIGALRM, which interrupts sleeps and I/O).

When a worker dies: the runs that finished on it keep their outcome; the run that was running on it is charged
an attempt (retried if it has retries left, else `Crashed` naming the worker), logged at ERROR once; the runs
queued on it are sent to the other workers without using a retry; the dead worker is replaced. A poison input
that kills its worker therefore crashes only its own run. Workers exit when the driver dies (Linux
`PR_SET_PDEATHSIG`, and a watchdog on the driver's pid everywhere).

A script that runs a flow at import time (no `if __name__ == "__main__":` guard) makes every worker run the
flow again while it starts; the runner fails at once with an error naming the missing guard instead of hanging.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

import cloudpickle

from .. import settings
from ..errors import ConfigurationError, WorkerCrashedError
from ..logging import engine_logger
from .remote import (
    Batch,
    BatchResult,
    BatchSummary,
    RemoteTaskRunner,
    install_log_forwarding,
    load_task,
    run_one,
    telemetry_sender,
)
from .remote.telemetry import _channel
from .remote.worker import calls_of, unpack_batch, watch_live_states

READY_TIMEOUT = 120.0   # seconds a new worker process may take to start (imports, initializer)
WATCHDOG_INTERVAL = 1.0
_MAX_EARLY_DEATHS = 3   # workers dying before they are ready, in a row: stop replacing them


# ---------------------------------------------------------------------------------------------------------------
# Worker side
# ---------------------------------------------------------------------------------------------------------------
def _dumps(msg: Any) -> bytes:
    try:
        return pickle.dumps(msg, protocol=5)
    except Exception:
        return cloudpickle.dumps(msg, protocol=5)


def _exit_with_parent(driver_pid: int) -> None:
    """Die with the driver: PR_SET_PDEATHSIG on Linux (parent = the process that forked us), and a watchdog
    thread on the driver's pid (covers forkserver, whose forked children outlive the driver otherwise)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
        except Exception:  # the watchdog still covers it
            pass

    def watch() -> None:
        while True:
            time.sleep(WATCHDOG_INTERVAL)
            try:
                os.kill(driver_pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass

    threading.Thread(target=watch, name="distributary-watchdog", daemon=True).start()


def _worker_main(conn: Connection, started: Any, driver_pid: int, name: str, init: bytes | None) -> None:
    """Entry point of a worker process: ready, then run batches until the driver says stop (or goes away).
    `started` (shared memory) counts the batches this worker has begun: the driver reads it when the worker dies
    to know whether the batch at the head of its queue was running."""
    _exit_with_parent(driver_pid)
    lock = threading.Lock()

    def send(msg: Any) -> None:
        data = _dumps(msg)
        with lock:
            conn.send_bytes(data)

    if init is not None:
        try:
            initializer, initargs = cloudpickle.loads(init)
            initializer(*initargs)
        except BaseException as exc:
            send(("init_failed", f"{type(exc).__name__}: {exc}"))
            return
    send(("ready", os.getpid()))
    sender = telemetry_sender()
    sender.set_transport(lambda channel, data: send(("tel", data)))
    tasks: dict[str, bytes] = {}
    while True:
        try:
            msg = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        if msg is None:
            return
        if msg[0] == "task":
            tasks[msg[1]] = msg[2]
            continue
        _, key, digest, payload = msg
        started.value += 1
        _, header, packed = unpack_batch(payload)
        specs = list(calls_of(packed))
        task = load_task(digest, tasks[digest])
        token = _channel.set(header.channel)
        install_log_forwarding()
        watch_live_states()
        try:
            last = len(specs) - 1
            with settings.overlay(header.settings_env):  # settings travel as data, not in os.environ
                for i, spec in enumerate(specs):
                    state, entry = run_one(task, header, spec, (), name, sender)
                    history = entry[4]
                    history[-1] = state  # the value travels with the outcome: no second round trip
                    if i == last:
                        sender.flush(header.channel)  # this batch's log records arrive before its last outcome
                    send(("run", key, entry[:5] + (False,), i == last))
        finally:
            _channel.reset(token)


# ---------------------------------------------------------------------------------------------------------------
# Driver side
# ---------------------------------------------------------------------------------------------------------------
class _Worker:
    __slots__ = ("name", "proc", "conn", "started", "finished", "tasks", "queue", "entries", "ready", "reader")

    def __init__(self, name: str, proc: Any, conn: Connection, started: Any):
        self.name, self.proc, self.conn, self.started = name, proc, conn, started
        self.finished = 0                   # batches it has finished (they finish in the order sent)
        self.tasks: set[str] = set()
        self.queue: deque[Batch] = deque()  # batches sent to it, in order; the first one runs
        self.entries: list[tuple] = []      # outcomes of the first batch's runs so far
        self.ready = False
        self.reader: threading.Thread | None = None


def _main_guard_hint() -> str:
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path:
        return ""
    try:
        with open(path, encoding="utf-8") as f:
            source = f.read()
    except OSError:
        return ""
    if "__main__" in source:
        return ""
    return (f" {path} has no `if __name__ == \"__main__\":` guard: each worker process imports the script and "
            f"runs the flow again while it starts. Put the code that runs the flow under "
            f"`if __name__ == \"__main__\":`.")


class ProcessPoolTaskRunner(RemoteTaskRunner):
    """Runs task runs in `max_workers` worker processes of its own (default: the number of CPUs).

    `mp_context`: "forkserver" (default where available), "spawn" or "fork". `initializer(*initargs)` runs once
    in each worker process before it takes work. `batch_size` / `max_in_flight`: as for the cluster runners (see
    `runners.remote`); `.submit()` never packs.
    """

    name = "processes"
    _compact_maps = False  # each run's outcome comes with its value: a compact .map() would gain nothing

    def __init__(self, max_workers: int | None = None, mp_context: str | None = None,
                 initializer: Callable[..., Any] | None = None, initargs: Sequence[Any] = (),
                 batch_size: int | None = None, max_in_flight: int | None = None):
        super().__init__(batch_size=batch_size, max_in_flight=max_in_flight)
        if max_workers is not None and (not isinstance(max_workers, int) or isinstance(max_workers, bool)
                                        or max_workers < 1):
            raise ConfigurationError(f"ProcessPoolTaskRunner: max_workers must be a whole number >= 1, "
                                     f"got {max_workers!r}.")
        if initializer is not None and not callable(initializer):
            raise ConfigurationError(f"ProcessPoolTaskRunner: initializer must be callable, got {initializer!r}.")
        self.max_workers = max_workers or (os.cpu_count() or 1)
        self._requested = max_workers
        self.mp_context = mp_context
        self.initializer = initializer
        self.initargs = tuple(initargs)

    def _config(self) -> dict[str, Any]:
        return {"max_workers": self._requested, "mp_context": self.mp_context, "initializer": self.initializer,
                "initargs": self.initargs, "batch_size": self.batch_size, "max_in_flight": self.max_in_flight}

    # -- backend: connect / disconnect ------------------------------------------------------------------------
    def _connect(self) -> None:
        if getattr(multiprocessing.current_process(), "_inheriting", False):
            raise ConfigurationError(
                "A ProcessPoolTaskRunner was started inside one of its own worker processes while it was "
                "starting: the script runs a flow when it is imported. Guard the code that runs the flow with "
                "`if __name__ == \"__main__\":`." + _main_guard_hint())
        method = self.mp_context or ("forkserver" if "forkserver" in multiprocessing.get_all_start_methods()
                                     else "spawn")
        try:
            self._ctx = multiprocessing.get_context(method)
        except ValueError as exc:
            raise ConfigurationError(f"ProcessPoolTaskRunner: unknown mp_context {method!r}; use one of "
                                     f"{multiprocessing.get_all_start_methods()}.") from exc
        if method == "forkserver":
            _preload_in_forkserver(self._ctx)
        self._wlock = threading.Lock()
        self._workers: list[_Worker] = []
        self._seq = 0
        self._early_deaths = 0
        self._stopping = False
        self._digests: dict[str, bytes] = {}
        try:
            self._init = (None if self.initializer is None
                          else cloudpickle.dumps((self.initializer, self.initargs), protocol=5))
        except Exception as exc:
            raise ConfigurationError(f"ProcessPoolTaskRunner: the initializer or its initargs cannot be pickled "
                                     f"({exc!r}).") from exc
        started: list[_Worker] = []
        try:
            for _ in range(self.max_workers):
                try:
                    started.append(self._spawn())
                except (OSError, EOFError) as exc:  # e.g. the forkserver died importing the script
                    _fail_start(f"The process runner could not start a worker process ({exc!r}).", exc)
            self._await_ready(started)
        except BaseException:
            self._stop_workers(started, graceful=False)
            raise
        for w in started:
            self._start_reader(w)
        with self._wlock:
            self._workers.extend(started)

    def _spawn(self) -> _Worker:
        self._seq += 1
        name = f"processes-{self._id[:6]}-w{self._seq}"
        ours, theirs = self._ctx.Pipe(duplex=True)
        started = self._ctx.RawValue("q", 0)
        proc = self._ctx.Process(target=_worker_main, name=name, daemon=True,  # type: ignore[attr-defined]
                                 args=(theirs, started, os.getpid(), name, self._init))
        proc.start()
        theirs.close()
        return _Worker(name, proc, ours, started)

    def _await_ready(self, workers: list[_Worker]) -> None:
        """Wait until each worker says it is ready; fail clearly (never hang) when one exits first."""
        deadline = time.monotonic() + READY_TIMEOUT
        waiting = list(workers)
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerCrashedError(f"{len(waiting)} worker process(es) of the process runner did not "
                                         f"start within {READY_TIMEOUT:.0f} s.")
            wait([w.conn for w in waiting] + [w.proc.sentinel for w in waiting], timeout=min(left, 1.0))
            for w in list(waiting):
                msg: Any = None
                try:
                    if w.conn.poll():
                        msg = pickle.loads(w.conn.recv_bytes())
                except (EOFError, OSError):
                    msg = ("exited",)
                if msg is None and w.proc.is_alive():
                    continue
                if msg is not None and msg[0] == "ready":
                    w.ready = True
                    waiting.remove(w)
                    continue
                if msg is not None and msg[0] == "init_failed":
                    raise ConfigurationError(f"The initializer of the process runner failed in worker process "
                                             f"{w.name}: {msg[1]}")
                w.proc.join(1)
                _fail_start(f"Worker process {w.name} of the process runner {_how(w.proc.exitcode)} before it "
                            f"was ready.")

    def _start_reader(self, w: _Worker) -> None:
        w.reader = threading.Thread(target=self._read, args=(w,), name=f"distributary-{w.name}", daemon=True)
        w.reader.start()

    def _disconnect(self) -> None:
        self._stopping = True
        with self._wlock:
            workers, self._workers = self._workers, []
        self._stop_workers(workers, graceful=True)

    def _stop_workers(self, workers: list[_Worker], graceful: bool) -> None:
        for w in workers:
            if graceful:
                try:
                    w.conn.send_bytes(_dumps(None))
                except OSError:
                    pass
        deadline = time.monotonic() + (5.0 if graceful else 0.0)
        for w in workers:
            w.proc.join(max(0.0, deadline - time.monotonic()))
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(5)
            try:
                w.conn.close()
            except OSError:
                pass

    # -- backend: work ---------------------------------------------------------------------------------------
    def _backend_threads(self) -> int:
        return self.max_workers

    def _backend_put_task(self, payload: bytes, digest: str) -> Any:
        self._digests[digest] = payload
        return digest

    def _backend_submit(self, batch: Batch, task_ref: Any, payload: bytes, upstream_refs: list[Any]) -> None:
        digest = task_ref
        with self._wlock:
            if not self._workers:
                raise WorkerCrashedError("the process runner has no worker processes left (they kept dying while "
                                         "starting; see the errors above)")
            w = min(self._workers, key=lambda x: len(x.queue))
            batch.ref = None
            batch.summary_ref = None
            w.queue.append(batch)
            first = digest not in w.tasks
            w.tasks.add(digest)
        try:
            if first:
                w.conn.send_bytes(_dumps(("task", digest, self._digests[digest])))
            w.conn.send_bytes(_dumps(("batch", batch.id, digest, payload)))
        except OSError:
            pass  # the worker is dead: its reader hands this batch back to the driver

    def _backend_collect(self, batches: list[Batch]) -> list[BatchSummary | BaseException | None]:
        return [b.summary_ref for b in batches]

    def _backend_fetch(self, batches: list[Batch]) -> list[BatchResult | BaseException]:
        # Values come back with each run's outcome; nothing stays in the workers.
        return [BatchResult(b.id, list(b.states or ()), None) for b in batches]

    def _backend_cancel(self, batches: list[Batch]) -> None:
        """Kill the workers that run or hold these batches (a running task cannot be stopped any other way);
        they are replaced as after any worker death, unless the runner is stopping."""
        ids = {id(b) for b in batches}
        with self._wlock:
            busy = [w for w in self._workers if any(id(b) in ids for b in w.queue)]
        for w in busy:
            engine_logger("runners").warning("Stopping worker process %s (pid %s): its task runs were cancelled.",
                                             w.name, w.proc.pid)
            w.proc.kill()

    def _read(self, w: _Worker) -> None:
        """One thread per worker: outcomes, telemetry, and the worker's death."""
        conn = w.conn
        handle = self._receiver.handle
        while True:
            try:
                msg = pickle.loads(conn.recv_bytes())
            except (EOFError, OSError):
                break
            except Exception as exc:
                engine_logger("runners").error("Worker process %s sent a message the driver cannot read (%r); "
                                               "stopping it.", w.name, exc)
                w.proc.kill()
                break
            kind = msg[0]
            if kind == "tel":
                handle(msg[1])
            elif kind == "run":
                w.entries.append(msg[2])
                if msg[3]:
                    with self._wlock:
                        batch = w.queue.popleft()
                        entries, w.entries = w.entries, []
                        w.finished += 1
                    batch.summary_ref = BatchSummary(batch.id, w.name, entries)
                    self._settle_here(batch)
        self._died(w)

    def _died(self, w: _Worker) -> None:
        w.proc.join(5)
        with self._wlock:
            if w in self._workers:
                self._workers.remove(w)
            lost, w.queue = list(w.queue), deque()
            entries = w.entries
            head_running = w.started.value > w.finished
        if self._stopping and not lost:
            return
        reason = f"worker process {w.name} (pid {w.proc.pid}) {_how(w.proc.exitcode)}"
        if not lost:
            engine_logger("runners").warning("The %s while idle; starting a new one.", reason)
        self._replace(w)
        for i, batch in enumerate(lost):
            running = i == 0 and head_running
            batch.summary_ref = BatchSummary(batch.id, w.name, entries if running else [], lost=reason,
                                             running=running)
            self._batch_finished(batch)

    def _replace(self, dead: _Worker) -> None:
        if self._stopping:
            return
        if not dead.ready:
            self._early_deaths += 1
        try:
            w = self._spawn()
            self._await_ready([w])
        except Exception as exc:
            self._early_deaths += 1
            engine_logger("runners").error("Could not replace worker process %s: %s", dead.name, exc)
            if self._early_deaths < _MAX_EARLY_DEATHS:
                return self._replace(dead)
            return None
        self._early_deaths = 0
        with self._wlock:
            stopping = self._stopping
            if not stopping:
                self._workers.append(w)
        if stopping:  # the runner began to stop while this one started: nobody else would stop it
            self._stop_workers([w], graceful=False)
            return None
        self._start_reader(w)
        return None


def _preload_in_forkserver(ctx: Any) -> None:
    """Have the forkserver import this module once, so that each worker it forks starts without importing
    distributary again (~0.1 s per worker). Applies when the forkserver starts (once per driver process)."""
    from multiprocessing import forkserver

    current = list(getattr(getattr(forkserver, "_forkserver", None), "_preload_modules", None) or ["__main__"])
    if __name__ not in current:
        ctx.set_forkserver_preload([*current, __name__])


def _fail_start(what: str, cause: BaseException | None = None) -> None:
    hint = _main_guard_hint()
    if hint:
        raise ConfigurationError(what + hint) from cause
    raise WorkerCrashedError(what + " Its error output above says why.") from cause


def _how(exitcode: int | None) -> str:
    if exitcode is None:
        return "stopped answering"
    if exitcode < 0:
        try:
            return f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with code {exitcode}"


__all__ = ["ProcessPoolTaskRunner"]
