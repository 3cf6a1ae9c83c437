"""The atomic claim of a deployment's run (Scheduled -> Pending) under its deployment's, its work pool's and its
work queue's concurrency limits.

A claim is one transaction: the deployment's row (then the pool's, then the queue's) is locked, and one
conditional UPDATE moves the run to Pending only if fewer than `limit` runs of the deployment (and of the pool,
and of the queue) are active. The lock makes claims of one deployment take turns on PostgreSQL (the UPDATE's condition is evaluated after the previous
claimant committed); SQLite's writers take turns already. A slot is the run's own active state, so it needs no
release: it is free once the run is final, or Crashed when its worker's heartbeat stopped.
"""
from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from ..states import StateType
from .models import TABLES

flow_run_t, state_t = TABLES["flow_run"], TABLES["run_state"]
deployment_t, pool_t, queue_t = TABLES["deployment"], TABLES["work_pool"], TABLES["work_queue"]
SCHEDULED = StateType.SCHEDULED.value
ACTIVE = (StateType.PENDING.value, StateType.RUNNING.value, StateType.CANCELLING.value)


def _active(where: Any) -> Any:
    other = flow_run_t.alias("active_run")
    cond = where(other.c)
    return sa.select(sa.func.count()).select_from(other).where(cond, other.c.state_type.in_(ACTIVE)).scalar_subquery()


def claim(conn: sa.Connection, run_id: str, state_name: str, message: str | None,
          worker_name: str | None) -> bool:
    """Claim the run in `conn`'s transaction; False if another claimant has it or a limit is reached (a run of a
    deployment whose limit says CANCEL_NEW is then Cancelled)."""
    c = flow_run_t.c
    run = conn.execute(sa.select(c.deployment_id, c.work_pool_name, c.work_queue_id).where(
        c.id == run_id, c.state_type == SCHEDULED)).first()
    if run is None:
        return False
    where = [c.id == run_id, c.state_type == SCHEDULED]
    dep = None
    if run.deployment_id is not None:
        dep = conn.execute(sa.select(deployment_t.c.concurrency_limit, deployment_t.c.collision_strategy)
                           .where(deployment_t.c.id == run.deployment_id).with_for_update()).first()
        if dep is not None and dep.concurrency_limit is not None:
            where.append(_active(lambda o: o.deployment_id == run.deployment_id) < dep.concurrency_limit)
    if run.work_pool_name is not None:
        pool = conn.execute(sa.select(pool_t.c.concurrency_limit).where(pool_t.c.name == run.work_pool_name)
                            .with_for_update()).first()
        if pool is not None and pool.concurrency_limit is not None:
            where.append(_active(lambda o: o.work_pool_name == run.work_pool_name) < pool.concurrency_limit)
    if run.work_queue_id is not None:
        queue = conn.execute(sa.select(queue_t.c.concurrency_limit).where(queue_t.c.id == run.work_queue_id)
                             .with_for_update()).first()
        if queue is not None and queue.concurrency_limit is not None:
            where.append(_active(lambda o: o.work_queue_id == run.work_queue_id) < queue.concurrency_limit)
    now = time.time()
    extra = {} if worker_name is None else {"worker_name": worker_name}
    n = conn.execute(sa.update(flow_run_t).where(*where).values(
        state_type=StateType.PENDING.value, state_name=state_name, state_message=message, state_ts=now,
        **extra)).rowcount
    if n:
        _history(conn, run_id, StateType.PENDING.value, state_name, message, now)
        return True
    if dep is not None and dep.concurrency_limit is not None and dep.collision_strategy == "CANCEL_NEW":
        full = conn.execute(sa.select(_active(lambda o: o.deployment_id == run.deployment_id))).scalar() or 0
        if full >= dep.concurrency_limit:
            msg = f"Deployment concurrency limit of {dep.concurrency_limit} reached (CANCEL_NEW)."
            if conn.execute(sa.update(flow_run_t).where(c.id == run_id, c.state_type == SCHEDULED).values(
                    state_type=StateType.CANCELLED.value, state_name="Cancelled", state_message=msg,
                    state_ts=now, end_time=now)).rowcount:
                _history(conn, run_id, StateType.CANCELLED.value, "Cancelled", msg, now)
    return False


def _history(conn: sa.Connection, run_id: str, kind: str, name: str, message: str | None, ts: float) -> None:
    conn.execute(state_t.insert(), [{"run_id": run_id, "type": kind, "name": name, "message": message,
                                     "timestamp": ts, "result_ref": None}])
