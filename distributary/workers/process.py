"""The process worker: polls its pool, claims due runs (an atomic Scheduled -> Pending each, so of several workers
exactly one runs a run), and runs each in a subprocess configured by the pool's job template and the run's job
variables (env, command, working_dir). It also schedules the pool's deployments (whoever is running schedules),
heartbeats, and crashes the runs of workers whose heartbeats stopped.

It is `serve()`'s runner with another source of runs: the subprocesses, crash detection, cancellation and
graceful stop are the runner's (`distributary.deployments.runner`).
"""
from __future__ import annotations

import os
import shlex
import socket
import time
from typing import Any

from .. import settings
from ..deployments.runner import SCHEDULE_EVERY, Runner
from ..logging import engine_logger

_log = engine_logger("worker")


class StoredDeployment:
    """A registered deployment as a worker sees it: where its runs start, and its flow (loaded from the
    entrypoint only when a hook has to run here)."""

    def __init__(self, dep: Any):
        self.dep = dep
        self.path = dep.path
        self.full_name = dep.full_name
        self._flow: Any = None

    @property
    def flow(self) -> Any:
        if self._flow is None:
            from ..deployments.definition import load_flow

            try:
                self._flow = load_flow(self.dep.entrypoint, self.dep.path)
            except Exception as exc:  # hooks are best effort; the run's state is already recorded
                _log.warning("Could not load the flow of %s for its hooks: %s", self.full_name, exc)

                class _NoHooks:
                    on_cancellation: tuple = ()
                    on_crashed: tuple = ()
                self._flow = _NoHooks()
        return self._flow


class ProcessWorker(Runner):
    """`distributary worker start --pool NAME [--work-queue Q ...] [--limit N] [--name NAME]`: claims from the
    pool's queues (or only `work_queues`) by priority."""

    type = "process"

    def __init__(self, work_pool_name: str, name: str | None = None, limit: int | None = None,
                 query_seconds: float | None = None, storage: Any = None, work_queues: list[str] | None = None):
        super().__init__(name=name or f"{socket.gethostname()}-{os.getpid()}", limit=limit,
                         query_seconds=query_seconds, pause_on_shutdown=False, storage=storage)
        self.work_pool_name = work_pool_name
        self.work_queues = list(work_queues) if work_queues else None
        self.pool = self.storage.read_work_pool(work_pool_name)  # a clear error if it does not exist
        for queue in self.work_queues or ():
            self.storage.read_work_queue_by_name(work_pool_name, queue)  # likewise for a queue
        self._known: dict[str, StoredDeployment] = {}

    def _starting_message(self) -> str:
        queues = f", queue(s) {', '.join(map(repr, self.work_queues))}" if self.work_queues else ""
        return (f"Worker {self.name!r} started on work pool {self.work_pool_name!r} ({self.pool.type}{queues}); "
                "stop with Ctrl-C.")

    def tick(self) -> None:
        st = self.storage
        st.worker_heartbeat(self.work_pool_name, self.name)
        now = time.monotonic()
        if now - self._last_schedule >= SCHEDULE_EVERY:
            self._last_schedule = now
            ids = st.read_pool_deployment_ids(self.work_pool_name)
            for did in ids:
                st.schedule_runs(did)
            st.mark_late_runs(deployment_ids=ids)
            timeout = float(settings.get("WORKER_HEARTBEAT_TIMEOUT"))
            for rid in st.crash_orphaned_runs(self.work_pool_name, timeout=timeout):
                _log.warning("Flow run %s was Crashed: its worker stopped sending heartbeats.", rid)
                self._orphaned(rid)
        self._cancel_requested()
        self._reap()
        self._claim()

    def _orphaned(self, run_id: str) -> None:
        """A run of a dead worker was just Crashed; a process worker's runs died with it (Linux), so nothing to
        stop. A container worker stops the run's container, which outlives the worker."""

    def _claim(self) -> None:
        if self._stop.is_set():
            return
        room = (self.limit if self.limit is not None else 1_000_000) - len(self.in_flight)
        for run in self.storage.claim_pool_runs(self.work_pool_name, self.name, min(room, 100),
                                                work_queue_names=self.work_queues):
            self._launch(run, self._deployment(run.deployment_id))

    def _deployment(self, deployment_id: Any) -> StoredDeployment:
        key = str(deployment_id)
        if key not in self._known:
            self._known[key] = StoredDeployment(self.storage.read_deployment(key))
        return self._known[key]

    def _job(self, run: Any, deployment: Any) -> tuple[list[str], str | None, dict[str, str]]:
        from ..runstore.work_pools import render_job

        cmd, cwd, env = super()._job(run, deployment)
        job = render_job(self.pool.base_job_template, dict(run.job_variables or {}))
        env.update({str(k): str(v) for k, v in (job.get("env") or {}).items()})
        if job.get("command"):  # a command of the user's: it finds the run in DISTRIBUTARY__FLOW_RUN_ID
            cmd = shlex.split(str(job["command"]))
        return cmd, job.get("working_dir") or cwd, env
