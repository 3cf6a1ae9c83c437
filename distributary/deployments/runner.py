"""`serve()`: register deployments, keep their scheduled runs created ahead of time, and run each due run in a
subprocess of its own (`python -m distributary.deployments.execute RUN_ID`), whose console output is this
process's.

One loop, on one thread: schedule (every few seconds; exactly once across processes, see the run store), mark
Late runs, claim due runs atomically (two `serve()` processes never start one run twice), start them, watch the
subprocesses (one that dies without a final state ends `Crashed` with its exit code), and stop the runs asked to
cancel (`Cancelling` -> the subprocess is stopped -> `Cancelled`, and the flow's `on_cancellation` hooks run here).
On SIGTERM or Ctrl-C it stops taking runs, stops the runs in flight and marks them `Cancelled` (none is left
Running), and pauses its deployments so no more runs are scheduled for them.
"""
from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from .. import settings
from .. import states as S
from ..errors import ConfigurationError
from ..logging import engine_logger
from .definition import RunnerDeployment

SCHEDULE_EVERY = 5.0  # seconds between two scheduler passes
STOP_GRACE = 10.0     # seconds a stopped subprocess gets before SIGKILL
ACTIVE = ("PENDING", "RUNNING", "CANCELLING")
_log = engine_logger("runner")


def _poll_interval() -> float:
    return float(settings.get("RUNNER_POLL_INTERVAL"))


class _InFlight:
    __slots__ = ("run", "deployment", "proc", "started")

    def __init__(self, run: Any, deployment: Any, proc: subprocess.Popen):
        self.run = run
        self.deployment = deployment
        self.proc = proc
        self.started = time.monotonic()


class Runner:
    """Serves deployments from this process (Prefect's `Runner`). `limit`: at most this many runs at once."""

    def __init__(self, name: str | None = None, limit: int | None = None, query_seconds: float | None = None,
                 pause_on_shutdown: bool = True, storage: Any = None):
        self.name = name or f"serve-{socket.gethostname()}-{os.getpid()}"
        self.limit = limit
        self.query_seconds = query_seconds if query_seconds is not None else _poll_interval()
        self.pause_on_shutdown = pause_on_shutdown
        self._storage = storage
        self.deployments: dict[str, RunnerDeployment] = {}  # deployment id -> definition
        self.in_flight: dict[str, _InFlight] = {}
        self._stop = threading.Event()
        self._signal: int | None = None
        self._last_schedule = 0.0

    @property
    def storage(self) -> Any:
        if self._storage is None:
            from .definition import deployment_storage as get_storage

            self._storage = get_storage()
        return self._storage

    def add_deployment(self, deployment: RunnerDeployment) -> Any:
        """Register the deployment (create or update it in the run store) and serve it."""
        dep = deployment.apply(self.storage)
        self.deployments[str(dep.id)] = deployment
        return dep

    # -- the loop ------------------------------------------------------------------------------------------------
    def start(self, run_once: bool = False) -> None:
        """Serve until SIGTERM, Ctrl-C or `stop()` (or one pass with `run_once`). After a signal, once the runs
        in flight are stopped and marked, it raises SystemExit (0 for SIGTERM, 130 for Ctrl-C), so a script that
        serves ends there, as it would have without the handler."""
        restore = self._install_signals()
        _log.info("%s", self._starting_message())
        try:
            while not self._stop.is_set():
                self.tick()
                if run_once:
                    break
                self._stop.wait(self._until_next())
        finally:
            self.shutdown()
            restore()
        if self._signal is not None:
            raise SystemExit(0 if self._signal == signal.SIGTERM else 128 + self._signal)

    def _starting_message(self) -> str:
        names = ", ".join(d.full_name for d in self.deployments.values())
        first = next(iter(self.deployments.values())).full_name if self.deployments else "FLOW/DEPLOYMENT"
        return (f"Serving {len(self.deployments)} deployment(s): {names}. Trigger a run with `distributary "
                f"deployment run {first}`; stop with Ctrl-C.")

    def stop(self) -> None:
        self._stop.set()

    def _until_next(self) -> float:
        """Seconds to sleep: the poll interval, or less when one of our runs is due sooner (so a scheduled run
        starts at its time, not up to a poll interval late)."""
        wait = self.query_seconds
        ids = list(self.deployments)
        if ids:
            now = time.time()
            soon = self.storage.read_due_runs(ids, before=now + wait, after=now, limit=1)
            if soon and soon[0].expected_start_time is not None:
                wait = min(wait, max(0.01, soon[0].expected_start_time.timestamp() - now))
        return wait

    def tick(self) -> None:
        """One pass: schedule, mark Late, cancel, reap, start due runs."""
        from ..runstore.work_pools import SERVE_POOL

        ids = list(self.deployments)
        now = time.monotonic()
        self.storage.worker_heartbeat(SERVE_POOL, self.name)
        if now - self._last_schedule >= SCHEDULE_EVERY:
            self._last_schedule = now
            for did in ids:
                self.storage.schedule_runs(did)
            timeout = float(settings.get("WORKER_HEARTBEAT_TIMEOUT"))
            for rid in self.storage.crash_orphaned_runs(SERVE_POOL, timeout=timeout):
                _log.warning("Flow run %s was Crashed: the serve() process running it stopped.", rid)
        self.storage.mark_late_runs(deployment_ids=ids)
        self._cancel_requested()
        self._reap()
        self._start_due(ids)

    def _start_due(self, ids: list[str]) -> None:
        if not ids or self._stop.is_set():
            return
        room = None if self.limit is None else self.limit - len(self.in_flight)
        if room is not None and room <= 0:
            return
        for run in self.storage.read_due_runs(ids, limit=room):
            # the claim keeps the deployment's concurrency limit atomically: at the limit it fails (ENQUEUE: the
            # run waits) or cancels the run (CANCEL_NEW)
            if self.storage.claim_flow_run(run.id, worker_name=self.name):
                self._launch(run, self.deployments[str(run.deployment_id)])

    def _job(self, run: Any, deployment: Any) -> tuple[list[str], str | None, dict[str, str]]:
        """The command, working directory and environment of a run's process."""
        env = dict(os.environ)
        # the subprocess finds distributary the way this process did
        env["PYTHONPATH"] = os.pathsep.join(p for p in [_package_root(), env.get("PYTHONPATH", "")] if p)
        env["DISTRIBUTARY__FLOW_RUN_ID"] = str(run.id)
        return [sys.executable, "-m", "distributary.deployments.execute", str(run.id)], deployment.path or None, env

    def _launch(self, run: Any, deployment: Any) -> None:
        try:
            cmd, cwd, env = self._job(run, deployment)
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, start_new_session=True, preexec_fn=_die_with_parent)
        except (OSError, ValueError) as exc:  # ValueError: a bad job variable (the worker's template)
            self._end(run, deployment, S.Crashed(message=f"Could not start the flow run's process: {exc}"))
            return
        _log.info("Started flow run %r of deployment %r (process %d).", run.name, deployment.full_name, proc.pid)
        self.in_flight[str(run.id)] = _InFlight(run, deployment, proc)

    def _reap(self) -> None:
        for rid, job in list(self.in_flight.items()):
            code = job.proc.poll()
            if code is None:
                continue
            del self.in_flight[rid]
            current = self.storage.read_flow_run(rid)
            if current.state is not None and current.state.is_final():
                _log.info("Flow run %r finished in state %s.", current.name, current.state_name)
                continue
            self._end(current, job.deployment, S.Crashed(message=self._exit_message(job.proc, code)))

    def _exit_message(self, proc: Any, code: int) -> str:
        """Why a run whose process ended without a final state is Crashed."""
        return f"The flow run's process exited with code {code} before the run finished."

    def _cancel_requested(self) -> None:
        wanted = self.storage.read_cancelling(list(self.in_flight))
        for rid in wanted:
            job = self.in_flight.pop(rid)
            _log.info("Cancelling flow run %r: stopping its process %s.", job.run.name, job.proc.pid)
            self._stop_process(job.proc)
            current = self.storage.read_flow_run(rid)
            if current.state is not None and current.state.is_final() and current.state_type != "CANCELLING":
                continue  # it finished before it could be stopped
            self._end(current, job.deployment, S.Cancelled(message="The flow run was cancelled."))

    def _stop_process(self, proc: Any) -> None:
        """Stop a run's process (a cluster worker stops its cluster task instead)."""
        _terminate(proc)

    def _end(self, run: Any, deployment: Any, state: Any) -> None:
        """Record a final state the run's own process could not, and run the flow's hooks for it here."""
        self.storage.set_flow_run_state(run.id, state)
        recorded = self.storage.read_flow_run(run.id)
        level = 30 if state.is_cancelled() else 40
        _log.log(level, "Flow run %r is %s: %s", run.name, state.name, state.message)
        from ..engine import run_hook

        flow = deployment.flow
        hooks = flow.on_cancellation if state.is_cancelled() else flow.on_crashed if state.is_crashed() else ()
        for hook in hooks:
            run_hook(hook, flow, recorded, state)

    def shutdown(self) -> None:
        """Stop the runs in flight (each ends Cancelled) and pause the served deployments."""
        for rid, job in list(self.in_flight.items()):
            self._stop_process(job.proc)
            del self.in_flight[rid]
            current = self.storage.read_flow_run(rid)
            if current.state is not None and current.state.is_final():
                continue
            self._end(current, job.deployment, S.Cancelled(
                message="The serve() process that ran this flow run was stopped."))
        if self.pause_on_shutdown:
            for did in self.deployments:
                self.storage.update_deployment(did, paused=True)

    def _install_signals(self) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

        def handler(signum: int, _frame: Any) -> None:
            _log.info("Received %s: stopping (runs in flight are stopped and marked Cancelled).",
                      signal.Signals(signum).name)
            self._signal = signum
            self._stop.set()

        for sig in previous:
            signal.signal(sig, handler)

        def restore() -> None:
            for sig, prev in previous.items():
                signal.signal(sig, prev)
        return restore


def _die_with_parent() -> None:
    """In the run's process, before exec: on Linux, end it when the serve()/worker process dies (SIGKILL
    included), so a run is never left running unwatched."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def _package_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _terminate(proc: subprocess.Popen) -> None:
    """SIGTERM to the run's process group, SIGKILL after STOP_GRACE."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        proc.terminate()
    try:
        proc.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def serve(*deployments: RunnerDeployment, limit: int | None = None, pause_on_shutdown: bool = True,
          print_starting_message: bool = True, query_seconds: float | None = None) -> None:
    """Serve several deployments from this process: `distributary.serve(a.to_deployment("a"), b.to_deployment(
    "b"))`. Blocks until SIGTERM or Ctrl-C."""
    if not deployments:
        raise ConfigurationError("serve() needs at least one deployment: serve(my_flow.to_deployment('name'))")
    runner = Runner(limit=limit, pause_on_shutdown=pause_on_shutdown, query_seconds=query_seconds)
    for d in deployments:
        if not isinstance(d, RunnerDeployment):
            raise ConfigurationError(f"serve() takes deployments made by flow.to_deployment(...), got {d!r}")
        runner.add_deployment(d)
    if print_starting_message:
        print(f"Your deployments are being served: {', '.join(d.full_name for d in deployments)}. Run one with "
              f"`distributary deployment run '{deployments[0].full_name}'`.", flush=True)
    runner.start()


def upcoming(storage: Any, deployment_id: Any, n: int = 5) -> list[dt.datetime]:
    """The next scheduled times of a deployment's runs (for the CLI)."""
    runs = storage.read_due_runs([deployment_id], before=time.time() + 10 * 365 * 86400, limit=n)
    return [r.expected_start_time for r in runs if r.expected_start_time]
