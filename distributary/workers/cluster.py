"""Cluster workers (`distributary worker start --pool NAME --type dask | ray`): the process worker's loop (claim,
heartbeat, reap, cancel), but each flow run is submitted to an existing Dask or Ray cluster by address and runs
there: a cluster task starts the run's process (`python -m distributary.deployments.execute RUN_ID`) on the
cluster's machine, and that run's tasks go to the same cluster (`DaskTaskRunner` / `RayTaskRunner` at the
address) unless its flow names another runner.

The address comes from `--address` or the pool's job template (the `address` job variable). What reaches the
cluster is the run's id, its job variables' `env`, and the DISTRIBUTARY_* settings of the worker (so the run
records where the worker does); the cluster machine needs the deployment's files at its `path`.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from .. import states as S
from ..deployments.execute import CLUSTER_ENV
from ..errors import ConfigurationError, MissingDependencyError
from ..logging import engine_logger
from .process import ProcessWorker

STOP_GRACE = 10.0
_log = engine_logger("worker")


def run_job(cmd: list[str], env: dict[str, str], cwd: str | None, should_stop: Any = None) -> int:
    """On a cluster worker: run the flow run's process to its end (or until `should_stop()`); its exit code.
    `cmd` starting with "-m" runs this interpreter."""
    if cmd and cmd[0] == "-m":
        cmd = [sys.executable, *cmd]
    full_env = {**os.environ, **env}
    if cwd and not os.path.isdir(cwd):
        raise ConfigurationError(f"the deployment's folder {cwd} does not exist on this cluster machine "
                                 f"({os.uname().nodename}): the cluster needs the flow's files at the same path")
    proc = subprocess.Popen(cmd, env=full_env, cwd=cwd or None, start_new_session=True)
    while True:
        try:
            return proc.wait(0.5)
        except subprocess.TimeoutExpired:
            if should_stop is not None and should_stop():
                _stop_group(proc)
                return proc.wait()


def _stop_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_on_dask(cmd: list[str], env: dict[str, str], cwd: str | None, cancel_event: str) -> int:
    """The Dask task of one flow run. It leaves the worker's thread pool while it waits (`secede`), so the run's
    own tasks can use every thread of the cluster; cancelling sets the Dask `Event` named `cancel_event`."""
    from distributed import Event, secede

    secede()
    event = Event(cancel_event)
    return run_job(cmd, env, cwd, should_stop=event.is_set)


def run_on_ray(cmd: list[str], env: dict[str, str], cwd: str | None) -> int:
    """The Ray task of one flow run (cancelled with `ray.cancel(force=True)`, which ends this process; the run's
    process dies with it)."""
    return run_job(cmd, env, cwd)


class _Handle:
    """A flow run on the cluster, with the `poll()` the runner's loop reads (None while it runs, then the exit
    code; a task that failed on the cluster: 1)."""

    pid = None

    def __init__(self, done: Any, result: Any, cancel: Any):
        self._done, self._result, self._cancel = done, result, cancel
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and self._done():
            try:
                self.returncode = int(self._result())
            except Exception as exc:  # the cluster task itself failed: the run is Crashed with this code
                _log.error("The flow run's cluster task failed: %s", exc)
                self.returncode = 1
        return self.returncode

    def stop(self) -> None:
        if self.poll() is None:
            self._cancel()


class ClusterWorker(ProcessWorker):
    """The worker of `dask` and `ray` pools."""

    type = "cluster"

    def __init__(self, work_pool_name: str, kind: str, address: str | None = None, **kwargs: Any):
        super().__init__(work_pool_name, **kwargs)
        from ..runstore.work_pools import render_job

        if kind not in ("dask", "ray"):
            raise ConfigurationError(f"unknown cluster worker type {kind!r}: use dask or ray")
        self.kind = kind
        self.address = address or render_job(self.pool.base_job_template, {}).get("address")
        if not self.address:
            raise ConfigurationError(
                f"a {kind} worker needs the cluster's address: `distributary worker start --pool {work_pool_name} "
                f"--type {kind} --address ADDRESS`, or set the `address` default in the pool's base job template")
        self._client: Any = None

    def _starting_message(self) -> str:
        return (f"Worker {self.name!r} started on work pool {self.work_pool_name!r}, submitting flow runs to the "
                f"{self.kind} cluster at {self.address}; stop with Ctrl-C.")

    def _connect(self) -> Any:
        if self._client is None:
            try:
                if self.kind == "dask":
                    from distributed import Client

                    self._client = Client(self.address, timeout=30, set_as_default=False)
                else:
                    import ray

                    if not ray.is_initialized():
                        ray.init(address=self.address, log_to_driver=False)
                    self._client = ray.remote(num_cpus=0)(run_on_ray)
            except ImportError as exc:
                raise MissingDependencyError(f"the {self.kind} worker ({exc.name})", self.kind, exc) from exc
        return self._client

    def _remote_env(self, env: dict[str, str], job_env: dict[str, str]) -> dict[str, str]:
        keep = {k: v for k, v in env.items() if k.startswith("DISTRIBUTARY") or k == "PYTHONPATH"}
        keep.update(job_env)
        keep[CLUSTER_ENV] = f"{self.kind}|{self.address}"
        return keep

    def _launch(self, run: Any, deployment: Any) -> None:
        from ..deployments import runner as R
        from ..runstore.work_pools import render_job

        try:
            cmd, cwd, env = self._job(run, deployment)
            job = render_job(self.pool.base_job_template, dict(run.job_variables or {}))
            remote_env = self._remote_env(env, {str(k): str(v) for k, v in (job.get("env") or {}).items()})
            if cmd[:1] == [sys.executable]:
                cmd = cmd[1:]  # the cluster machine's interpreter runs it
            handle = self._submit(run, cmd, remote_env, cwd)
        except (OSError, ValueError, ConfigurationError) as exc:
            self._end(run, deployment, S.Crashed(message=f"Could not submit the flow run to the {self.kind} "
                                                         f"cluster at {self.address}: {exc}"))
            return
        _log.info("Submitted flow run %r of deployment %r to the %s cluster at %s.", run.name, deployment.full_name,
                  self.kind, self.address)
        self.in_flight[str(run.id)] = R._InFlight(run, deployment, handle)  # type: ignore[arg-type]

    def _submit(self, run: Any, cmd: list[str], env: dict[str, str], cwd: str | None) -> _Handle:
        client = self._connect()
        if self.kind == "dask":
            from distributed import Event

            name = f"distributary-cancel-{run.id}"
            fut = client.submit(run_on_dask, cmd, env, cwd, name, key=f"flow-run-{run.id}-{time.time_ns()}",
                                pure=False)
            return _Handle(fut.done, fut.result, lambda: Event(name, client=client).set())
        import ray

        ref = client.remote(cmd, env, cwd)
        return _Handle(lambda: bool(ray.wait([ref], timeout=0)[0]), lambda: ray.get(ref),
                       lambda: ray.cancel(ref, force=True))

    def _stop_process(self, proc: Any) -> None:
        if isinstance(proc, _Handle):
            proc.stop()
            deadline = time.monotonic() + STOP_GRACE + 5
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            return
        super()._stop_process(proc)

    def shutdown(self) -> None:
        super().shutdown()
        if self.kind == "dask" and self._client is not None:
            self._client.close()
