"""Work pools and workers in the run store: pools (type, paused, concurrency limit, base job template), worker
heartbeats, the atomic claim of a pool's due runs, and crashing the runs of workers that stopped beating.

`WorkPoolStorage` is mixed into `SqlRunStorage` (like `DeploymentStorage`)."""
from __future__ import annotations

import copy
import datetime as dt
import time
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..errors import ConfigurationError, ObjectNotFound
from ..schemas import objects as O
from ..states import StateType
from .deployments import SCHEDULED, _epoch, _insert
from .models import TABLES
from .work_queues import DEFAULT_QUEUE, add_queue

flow_run_t, state_t = TABLES["flow_run"], TABLES["run_state"]
pool_t, worker_t, queue_t = TABLES["work_pool"], TABLES["worker"], TABLES["work_queue"]
POOL_TYPES = ("process", "dask", "ray", "docker", "kubernetes")
ACTIVE = (StateType.PENDING.value, StateType.RUNNING.value, StateType.CANCELLING.value)
HEARTBEAT_TIMEOUT = 90.0  # seconds without a heartbeat after which a worker's runs are Crashed
SERVE_POOL = "(serve)"    # the heartbeats of serve() processes: their runs are in no pool


def _ts(value: float | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromtimestamp(value, tz=dt.timezone.utc)


def default_job_template(pool_type: str) -> dict[str, Any]:
    """The base job template of a pool type, in Prefect's format: `job_configuration` refers to `variables`."""
    props: dict[str, Any] = {
        "env": {"type": "object", "title": "Environment variables", "additionalProperties": {"type": "string"},
                "default": {}},
        "command": {"type": ["string", "null"], "title": "Command", "default": None},
        "working_dir": {"type": ["string", "null"], "title": "Working directory", "default": None},
    }
    config = {"env": "{{ env }}", "command": "{{ command }}", "working_dir": "{{ working_dir }}"}
    if pool_type in ("docker", "kubernetes"):
        props.update(image={"type": ["string", "null"], "default": None}, cpu={"type": ["string", "null"],
                     "default": None}, memory={"type": ["string", "null"], "default": None})
        config.update(image="{{ image }}", cpu="{{ cpu }}", memory="{{ memory }}")
        props["labels"] = {"type": "object", "title": "Labels", "additionalProperties": {"type": "string"},
                           "default": {}}
        config["labels"] = "{{ labels }}"
    if pool_type == "kubernetes":
        props["namespace"] = {"type": "string", "title": "Namespace", "default": "default"}
        config["namespace"] = "{{ namespace }}"
    if pool_type in ("dask", "ray"):
        props["address"] = {"type": ["string", "null"], "title": "Cluster address", "default": None}
        config["address"] = "{{ address }}"
    return {"job_configuration": config, "variables": {"type": "object", "properties": props}}


def render_job(template: dict[str, Any], job_variables: dict[str, Any]) -> dict[str, Any]:
    """The job configuration with each `{{ name }}` replaced by the run's job variable (or the default)."""
    props = template.get("variables", {}).get("properties", {})
    unknown = sorted(set(job_variables) - set(props))
    if unknown:
        raise ConfigurationError(f"unknown job variable(s) {unknown}: this pool's template takes {sorted(props)}")
    values = {k: copy.deepcopy(p.get("default")) for k, p in props.items()}
    values.update(job_variables)
    out: dict[str, Any] = {}
    for key, spec in template.get("job_configuration", {}).items():
        if isinstance(spec, str) and spec.startswith("{{") and spec.endswith("}}"):
            out[key] = values.get(spec[2:-2].strip())
        else:
            out[key] = spec
    return out


class WorkPoolStorage:
    """Work pools and workers (mixed into `SqlRunStorage`)."""

    engine: Any
    dialect: str
    if TYPE_CHECKING:  # provided by SqlRunStorage / DeploymentStorage
        def _read(self) -> sa.Connection: ...

        def _flow_run(self, r: Any) -> O.FlowRun: ...

        def claim_flow_run(self, flow_run_id: uuid.UUID | str, state_name: str = "Pending",
                           message: str | None = None, worker_name: str | None = None) -> bool: ...

        def set_flow_run_state(self, flow_run_id: uuid.UUID | str, state: Any, force: bool = False) -> O.State: ...

    def _pool(self, r: Any) -> O.WorkPool:
        return O.WorkPool(id=r.id, name=r.name, type=r.type, description=r.description, is_paused=bool(r.paused),
                          concurrency_limit=r.concurrency_limit, base_job_template=r.base_job_template or {},
                          default_queue_id=r.default_queue_id, created=_ts(r.created), updated=_ts(r.updated))

    def create_work_pool(self, name: str, type: str = "process", description: str | None = None,
                         base_job_template: dict[str, Any] | None = None, concurrency_limit: int | None = None,
                         paused: bool = False) -> O.WorkPool:
        if type not in POOL_TYPES:
            raise ConfigurationError(f"unknown work-pool type {type!r}: use one of {', '.join(POOL_TYPES)}")
        now = time.time()
        with self.engine.begin() as conn:
            got = conn.execute(_insert(self.dialect, pool_t).values(
                id=str(uuid.uuid4()), name=name, type=type, description=description, paused=paused,
                concurrency_limit=concurrency_limit, base_job_template=base_job_template or default_job_template(type),
                created=now, updated=now).on_conflict_do_nothing(index_elements=["name"]).returning(pool_t.c.id)).first()
            if got is not None:  # every pool has its default queue (Prefect's `default_queue_id`)
                qid = add_queue(conn, got.id, DEFAULT_QUEUE, priority=1, description="The work pool's default queue.")
                conn.execute(sa.update(pool_t).where(pool_t.c.id == got.id).values(default_queue_id=qid))
        if got is None:
            raise ConfigurationError(f"work pool {name!r} already exists (`distributary work-pool inspect {name}`)")
        return self.read_work_pool(name)

    def read_work_pools(self) -> list[O.WorkPool]:
        with self._read() as conn:
            return [self._pool(r) for r in conn.execute(sa.select(pool_t).order_by(pool_t.c.name))]

    def read_work_pool(self, name: str) -> O.WorkPool:
        with self._read() as conn:
            r = conn.execute(sa.select(pool_t).where(pool_t.c.name == name)).first()
        if r is None:
            raise ObjectNotFound(f"work pool {name!r} does not exist: create it with `distributary work-pool create "
                                 f"{name} --type process`")
        return self._pool(r)

    def update_work_pool(self, name: str, **values: Any) -> O.WorkPool:
        allowed = {"paused", "concurrency_limit", "description", "base_job_template"}
        if set(values) - allowed:
            raise ConfigurationError(f"cannot update work-pool field(s) {sorted(set(values) - allowed)}")
        with self.engine.begin() as conn:
            if not conn.execute(sa.update(pool_t).where(pool_t.c.name == name).values(
                    updated=time.time(), **values)).rowcount:
                raise ObjectNotFound(f"work pool {name!r} does not exist")
        return self.read_work_pool(name)

    def delete_work_pool(self, name: str) -> None:
        with self.engine.begin() as conn:
            pool_id = conn.execute(sa.select(pool_t.c.id).where(pool_t.c.name == name)).scalar()
            if pool_id is None or not conn.execute(sa.delete(pool_t).where(pool_t.c.id == pool_id)).rowcount:
                raise ObjectNotFound(f"work pool {name!r} does not exist")
            conn.execute(sa.delete(worker_t).where(worker_t.c.work_pool_name == name))
            conn.execute(sa.delete(queue_t).where(queue_t.c.work_pool_id == pool_id))

    # -- workers -------------------------------------------------------------------------------------------------
    def worker_heartbeat(self, work_pool_name: str, worker_name: str) -> None:
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(_insert(self.dialect, worker_t).values(
                id=str(uuid.uuid4()), name=worker_name, work_pool_name=work_pool_name, last_heartbeat=now,
                created=now).on_conflict_do_update(index_elements=["work_pool_name", "name"],
                                                   set_={"last_heartbeat": now}))

    def read_workers(self, work_pool_name: str) -> list[O.Worker]:
        q = sa.select(worker_t).where(worker_t.c.work_pool_name == work_pool_name).order_by(worker_t.c.name)
        with self._read() as conn:
            return [O.Worker(id=r.id, name=r.name, work_pool_name=r.work_pool_name,
                             last_heartbeat_time=_ts(r.last_heartbeat), created=_ts(r.created))
                    for r in conn.execute(q)]

    def _pool_queues(self, work_pool_name: str, limit: int, work_queue_names: Iterable[str] | None
                     ) -> tuple[int, list[Any]]:
        """How many runs the pool may start now (its limit) and its queues (or those named) in claim order:
        priority (lower first), then name. Nothing for a paused pool."""
        c = flow_run_t.c
        with self._read() as conn:
            pool = conn.execute(sa.select(pool_t).where(pool_t.c.name == work_pool_name)).first()
            if pool is None or pool.paused or limit <= 0:
                return 0, []
            if pool.concurrency_limit is not None:
                busy = conn.execute(sa.select(sa.func.count()).select_from(flow_run_t).where(
                    c.work_pool_name == work_pool_name, c.state_type.in_(ACTIVE))).scalar() or 0
                limit = min(limit, pool.concurrency_limit - int(busy))
            q = sa.select(queue_t).where(queue_t.c.work_pool_id == pool.id)
            if work_queue_names is not None:
                q = q.where(queue_t.c.name.in_(list(work_queue_names)))
            return limit, list(conn.execute(q.order_by(queue_t.c.priority, queue_t.c.name)))

    def _queue_due(self, queue: Any, room: int, now: float) -> list[str]:
        """Up to `room` (times 3, for lost claims) due runs of a queue, oldest first; none from a paused queue,
        and at most what its concurrency limit leaves."""
        c = flow_run_t.c
        if queue.paused or room <= 0:
            return []
        with self._read() as conn:
            if queue.concurrency_limit is not None:
                busy = conn.execute(sa.select(sa.func.count()).select_from(flow_run_t).where(
                    c.work_queue_id == queue.id, c.state_type.in_(ACTIVE))).scalar() or 0
                room = min(room, queue.concurrency_limit - int(busy))
                if room <= 0:
                    return []
            return [r.id for r in conn.execute(sa.select(c.id).where(
                c.work_queue_id == queue.id, c.state_type == SCHEDULED, c.expected_start_time <= now)
                .order_by(c.expected_start_time, c.id).limit(room))]

    def _runs(self, ids: list[str]) -> list[O.FlowRun]:
        if not ids:
            return []
        with self._read() as conn:
            rows = {r.id: self._flow_run(r) for r in conn.execute(sa.select(flow_run_t).where(
                flow_run_t.c.id.in_(ids)))}
        return [rows[i] for i in ids if i in rows]

    def read_pool_due_runs(self, work_pool_name: str, before: dt.datetime | float | None = None,
                           after: dt.datetime | float | None = None, limit: int = 10,
                           work_queue_names: Iterable[str] | None = None) -> list[O.FlowRun]:
        """The due runs a worker would claim, unclaimed: by queue priority, then scheduled time (Prefect's
        `get_scheduled_flow_runs` without a worker name)."""
        until = _epoch(before, time.time()) or time.time()
        room, queues = self._pool_queues(work_pool_name, limit, work_queue_names)
        ids: list[str] = []
        for queue in queues:
            if room - len(ids) <= 0:
                break
            ids += self._queue_due(queue, room - len(ids), until)
        runs = self._runs(ids)
        since = _epoch(after)
        if since is not None:
            runs = [r for r in runs if r.expected_start_time and r.expected_start_time.timestamp() > since]
        return runs

    def claim_pool_runs(self, work_pool_name: str, worker_name: str, limit: int,
                        work_queue_names: Iterable[str] | None = None) -> list[O.FlowRun]:
        """Claim up to `limit` due runs of the pool for this worker, from its queues (or those named) in priority
        order (lower first; ties by name), each claim an atomic Scheduled -> Pending, so of several workers
        exactly one gets a run. Nothing while the pool is paused or at its limit; nothing from a paused queue or
        one at its limit (claims.py checks the limits again in each claim's transaction)."""
        now = time.time()
        limit, queues = self._pool_queues(work_pool_name, limit, work_queue_names)
        claimed: list[str] = []
        for queue in queues:
            room = limit - len(claimed)
            if room <= 0:
                break
            got = 0
            for rid in self._queue_due(queue, room * 3, now):  # a few spare: other workers win some claims
                if got >= room:
                    break
                if self.claim_flow_run(rid, message=f"claimed by worker {worker_name}", worker_name=worker_name):
                    claimed.append(rid)
                    got += 1
        stale = [q.id for q in queues if q.last_polled is None or q.last_polled < now - 5]
        if stale:  # Prefect's queue status: READY while polled (written every few seconds, not every poll)
            with self.engine.begin() as conn:
                conn.execute(sa.update(queue_t).where(queue_t.c.id.in_(stale)).values(last_polled=now))
        return self._runs(claimed)

    def crash_orphaned_runs(self, work_pool_name: str, timeout: float = HEARTBEAT_TIMEOUT) -> list[str]:
        """Runs of the pool left Pending/Running by a worker whose heartbeat stopped `timeout` s ago: Crashed.
        `SERVE_POOL`: the runs of serve() processes (which heartbeat under that name)."""
        c = flow_run_t.c
        in_pool = c.work_pool_name.is_(None) if work_pool_name == SERVE_POOL else c.work_pool_name == work_pool_name
        now = time.time()
        dead = sa.select(worker_t.c.name).where(worker_t.c.work_pool_name == work_pool_name,
                                                worker_t.c.last_heartbeat < now - timeout)
        with self.engine.begin() as conn:
            ids = [r.id for r in conn.execute(sa.select(c.id).where(
                in_pool, c.state_type.in_(ACTIVE), c.worker_name.in_(dead)))]
            if not ids:
                return []
            who = "serve() process" if work_pool_name == SERVE_POOL else "worker"
            msg = f"The {who} running this flow run stopped sending heartbeats for {timeout:g} s."
            conn.execute(sa.update(flow_run_t).where(c.id.in_(ids), c.state_type.in_(ACTIVE)).values(
                state_type=StateType.CRASHED.value, state_name="Crashed", state_message=msg, state_ts=now))
            conn.execute(state_t.insert(), [{"run_id": i, "type": StateType.CRASHED.value, "name": "Crashed",
                                             "message": msg, "timestamp": now, "result_ref": None} for i in ids])
        return ids

    def set_infrastructure_pid(self, flow_run_id: uuid.UUID | str, infrastructure_pid: str) -> None:
        """Record where a worker submitted the run (a container id, a Kubernetes `namespace:job`), so the
        run can be found there (to stop it on cancellation, or by a user)."""
        with self.engine.begin() as conn:
            if not conn.execute(sa.update(flow_run_t).where(flow_run_t.c.id == str(flow_run_id)).values(
                    infrastructure_pid=infrastructure_pid)).rowcount:
                raise ObjectNotFound(f"no flow run with id {flow_run_id} in the run store")

    def read_pool_deployment_ids(self, work_pool_name: str) -> list[str]:
        d = TABLES["deployment"]
        with self._read() as conn:
            return [r.id for r in conn.execute(sa.select(d.c.id).where(d.c.work_pool_name == work_pool_name))]
