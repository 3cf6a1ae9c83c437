"""The worker of `docker` and `kubernetes` pools (`distributary worker start --pool NAME`): the process worker's
loop (claim, heartbeat, reap, cancel, graceful stop), but each claimed run is submitted as a container
(`docker run --detach`) or a Kubernetes Job (`kubectl apply -f -`) whose command runs the flow run inside it
(`python -m distributary.deployments.execute RUN_ID`, or the job's `command`, which finds the run in
DISTRIBUTARY__FLOW_RUN_ID).

What reaches the container: the job's env over the worker's DISTRIBUTARY_* settings (so the run records where the
worker does; secret settings reach `docker run` by name only, never in its argument list), the run's id, the
job's image, labels, cpu, memory and working directory. The image needs distributary and the deployment's files at
its `path`. The worker records the container id / `namespace:job-name` as the run's `infrastructure_pid`, polls
the container's state, stops it (`docker stop`, `kubectl delete job`) when the run is cancelled, and marks the run
Crashed, saying why, when it cannot be submitted or its container ends without a final state. A container
outlives a worker killed with SIGKILL: the worker that Crashes that worker's runs (heartbeat timeout) stops their
containers by their `infrastructure_pid`.
"""
from __future__ import annotations

import time
import urllib.parse
import uuid
from typing import Any

from .. import settings
from .. import states as S
from ..errors import ConfigurationError, DistributaryError
from ..logging import engine_logger
from .containers import CONTAINER_TYPES, InfrastructureUnavailable, Submitter, manifest, submitter
from .process import ProcessWorker

POLL_EVERY = 1.0  # seconds between two reads of one container's state
_log = engine_logger("worker")


class ContainerRun:
    """A submitted container or Job, with the `poll()` the runner's loop reads (None while it runs, then its exit
    code) and `stop()`. `pid` is its infrastructure id."""

    def __init__(self, sub: Submitter, infrastructure_id: str, run_id: str):
        self.sub, self.pid, self.run_id = sub, infrastructure_id, run_id
        self.returncode: int | None = None
        self.failure: str | None = None
        self._checked = 0.0

    def poll(self) -> int | None:
        if self.returncode is None and time.monotonic() - self._checked >= POLL_EVERY:
            self._checked = time.monotonic()
            try:
                code, failure = self.sub.status(self.pid, self.run_id)
            except InfrastructureUnavailable as exc:  # the daemon or the API server hiccupped: ask again later
                _log.warning("Could not read the state of flow run %s's %s job %s: %s", self.run_id, self.sub.kind,
                             self.pid, exc)
                return None
            if failure is not None and code != -1:
                self.stop_quietly()  # a pod that cannot pull its image would wait forever
            self.returncode, self.failure = code, failure
        return self.returncode

    def stop(self) -> None:
        if self.poll() is None:
            self.sub.stop(self.pid)

    def stop_quietly(self) -> None:
        try:
            self.sub.stop(self.pid)
        except InfrastructureUnavailable as exc:
            _log.warning("Could not remove flow run %s's failed %s job %s: %s", self.run_id, self.sub.kind,
                         self.pid, exc)


class ContainerWorker(ProcessWorker):
    """`distributary worker start --pool NAME` on a docker or kubernetes pool."""

    type = "container"

    def __init__(self, work_pool_name: str, **kwargs: Any):
        super().__init__(work_pool_name, **kwargs)
        self.kind = self.pool.type
        if self.kind not in CONTAINER_TYPES:
            raise ConfigurationError(f"work pool {work_pool_name!r} is of type {self.kind}, not "
                                     f"{' or '.join(CONTAINER_TYPES)}: start a {self.kind} worker for it")
        self.sub = submitter(self.kind)
        self.sub.check()  # before any run is claimed: a clear error when docker / kubectl is missing

    def _starting_message(self) -> str:
        where = "as Docker containers" if self.kind == "docker" else "as Kubernetes Jobs"
        return (f"Worker {self.name!r} started on work pool {self.work_pool_name!r}, submitting flow runs {where} "
                f"through {self.sub.check()}; stop with Ctrl-C.{self._reachability()}")

    def _reachability(self) -> str:
        """A warning when the containers are unlikely to reach the run store the worker uses."""
        url = str(settings.get("API_URL"))
        if not url:
            return (f" Note: runs report to the embedded run store in {settings.get('HOME')}; a container reaches "
                    "it only where that folder is mounted at the same path. Set DISTRIBUTARY_API_URL to a server "
                    "the containers can reach.")
        host = urllib.parse.urlsplit(url).hostname or ""
        if host in ("localhost", "127.0.0.1", "::1"):
            return (f" Note: DISTRIBUTARY_API_URL is {url}, and inside a container localhost is the container "
                    "itself: use an address the containers can reach (the host's name, or host.docker.internal).")
        return ""

    def _settings_env(self) -> tuple[dict[str, str], dict[str, str]]:
        """(plain, secret) DISTRIBUTARY_* settings of this worker, for the run in the container."""
        secret = {s.env for s in settings.SETTINGS.values() if s.secret}
        env = {k: v for k, v in settings.snapshot().items() if k != settings.PROFILE_ENV}
        return ({k: v for k, v in env.items() if k not in secret}, {k: v for k, v in env.items() if k in secret})

    def _launch(self, run: Any, deployment: Any) -> None:
        from ..deployments import runner as R
        from ..runstore.work_pools import render_job

        rid = str(run.id)
        try:
            plain, secret = self._settings_env()
            spec = manifest(self.kind, render_job(self.pool.base_job_template, dict(run.job_variables or {})), rid,
                            plain, attempt=uuid.uuid4().hex[:6])
            infrastructure_id = self.sub.submit(spec, secret)
        except (ConfigurationError, InfrastructureUnavailable, ValueError) as exc:
            self._end(run, deployment, S.Crashed(message=f"Could not submit the flow run as a {self.kind} job: "
                                                         f"{exc}"))
            return
        handle = ContainerRun(self.sub, infrastructure_id, rid)
        self.in_flight[rid] = R._InFlight(run, deployment, handle)  # type: ignore[arg-type]
        _log.info("Submitted flow run %r of deployment %r as %s job %s.", run.name, deployment.full_name, self.kind,
                  infrastructure_id)
        try:
            self.storage.set_infrastructure_pid(rid, infrastructure_id)
        except (DistributaryError, OSError) as exc:  # the run goes on; only its record lacks where it runs
            _log.warning("Could not record flow run %s's infrastructure id %s: %s", rid, infrastructure_id, exc)

    def _orphaned(self, run_id: str) -> None:
        """Stop the container of a run whose worker died (it was just Crashed): unlike a process, it lives on."""
        pid = self.storage.read_flow_run(run_id).infrastructure_pid
        if pid:
            _log.warning("Stopping %s job %s of flow run %s, whose worker died.", self.kind, pid, run_id)
            ContainerRun(self.sub, pid, run_id).stop_quietly()

    def _stop_process(self, proc: Any) -> None:
        if not isinstance(proc, ContainerRun):
            return super()._stop_process(proc)
        try:
            proc.stop()
        except InfrastructureUnavailable as exc:
            _log.error("Could not stop flow run %s's %s job %s: %s (stop it by hand)", proc.run_id, self.kind,
                       proc.pid, exc)

    def _exit_message(self, proc: Any, code: int) -> str:
        if not isinstance(proc, ContainerRun):
            return super()._exit_message(proc, code)
        if proc.failure is not None:
            return f"The flow run's {self.kind} job could not run: {proc.failure}."
        if self.kind == "docker":
            see = f"`docker logs {proc.pid}`"
        else:
            namespace, _, name = proc.pid.partition(":")
            see = f"`kubectl logs job/{name} -n {namespace}`"
        return (f"The flow run's {self.kind} container exited with code {code} before the run finished ({see} "
                "shows its output).")
