"""`/work_pools`: create, filter, read, change and delete work pools, their workers' heartbeats, and
`get_scheduled_flow_runs`, which workers poll.

Prefect's `get_scheduled_flow_runs` only lists due runs (its worker then proposes Pending, and the orchestration
rules let one worker win). distributary's worker sends `worker_name`: then the runs listed are claimed for it in
the same request, each an atomic Scheduled -> Pending, so of several workers exactly one gets a run, and the
pool's and deployments' concurrency limits apply.
"""
from __future__ import annotations

import datetime as dt
import time
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from pydantic import Field

from ...errors import ConfigurationError
from ...schemas import objects as O
from ..deps import Storage
from ._common import Body, Page, _str, flow_run_json, respond

router = APIRouter(prefix="/work_pools", tags=["work pools"])


class WorkPoolCreate(Body):
    name: str = Field(min_length=1)
    type: str = "process"
    description: str | None = None
    is_paused: bool = False
    concurrency_limit: int | None = Field(default=None, ge=0)
    base_job_template: dict[str, Any] | None = None
    storage_configuration: dict[str, Any] | None = None  # sent by Prefect's client; not used
    OPAQUE = Body.OPAQUE | {"base_job_template"}


class WorkPoolUpdate(Body):
    description: str | None = None
    is_paused: bool | None = None
    concurrency_limit: int | None = Field(default=None, ge=0)
    base_job_template: dict[str, Any] | None = None
    storage_configuration: dict[str, Any] | None = None
    OPAQUE = Body.OPAQUE | {"base_job_template"}


class _NameAny(Body):
    any_: list[str] | None = None


class WorkPoolFilter(Body):
    name: _NameAny | None = None
    type: _NameAny | None = None


class WorkPoolsFilter(Page):
    work_pools: WorkPoolFilter | None = None


class ScheduledRunsQuery(Body):
    work_queue_names: list[str] | None = None
    scheduled_before: dt.datetime | None = None
    scheduled_after: dt.datetime | None = None
    limit: int | None = Field(default=None, ge=0, le=1_000)
    worker_name: str | None = None  # distributary's: claim the runs for this worker


class Heartbeat(Body):
    name: str = Field(min_length=1)
    heartbeat_interval_seconds: float | None = None


class WorkersFilter(Page):
    workers: dict[str, Any] | None = None


def _online(w: O.Worker) -> bool:
    """A worker is ONLINE while its heartbeats are younger than the timeout after which its runs are Crashed."""
    from ... import settings

    beat = w.last_heartbeat_time
    return beat is not None and time.time() - beat.timestamp() < float(settings.get("WORKER_HEARTBEAT_TIMEOUT"))


def work_pool_json(pool: O.WorkPool, storage: Any) -> dict[str, Any]:
    """Prefect's WorkPool, its status as Prefect's: PAUSED, READY (a worker is online) or NOT_READY."""
    d = pool.model_dump(mode="json")
    ready = any(_online(w) for w in storage.read_workers(pool.name))
    d.update(status="PAUSED" if pool.is_paused else "READY" if ready else "NOT_READY", storage_configuration={})
    return d


def worker_json(w: O.Worker) -> dict[str, Any]:
    d = w.model_dump(mode="json")
    d.update(updated=d["last_heartbeat_time"], status="ONLINE" if _online(w) else "OFFLINE",
             heartbeat_interval_seconds=None, work_pool_id=None)
    return d


@router.post("/", status_code=201)
def create_work_pool(body: WorkPoolCreate, storage: Storage) -> JSONResponse:
    try:
        storage.read_work_pool(body.name)
    except LookupError:
        pass
    else:
        return JSONResponse({"detail": f"work pool {body.name!r} already exists"}, status_code=409)
    pool = storage.create_work_pool(body.name, type=body.type, description=body.description,
                                    base_job_template=body.base_job_template or None,
                                    concurrency_limit=body.concurrency_limit, paused=body.is_paused)
    return respond(work_pool_json(pool, storage), 201)


@router.post("/filter")
def read_work_pools(storage: Storage, body: WorkPoolsFilter | None = None) -> JSONResponse:
    body = body or WorkPoolsFilter()
    pools = storage.read_work_pools()
    flt = body.work_pools
    if flt is not None and flt.name is not None and flt.name.any_ is not None:
        pools = [p for p in pools if p.name in set(flt.name.any_)]
    if flt is not None and flt.type is not None and flt.type.any_ is not None:
        pools = [p for p in pools if p.type in set(flt.type.any_)]
    return respond([work_pool_json(p, storage) for p in pools[body.offset:body.offset + body.limit]])


@router.get("/{name}")
def read_work_pool(name: str, storage: Storage) -> JSONResponse:
    return respond(work_pool_json(storage.read_work_pool(name), storage))


@router.patch("/{name}", status_code=204)
def update_work_pool(name: str, body: WorkPoolUpdate, storage: Storage) -> Response:
    fields: dict[str, Any] = {}
    for key, column in (("description", "description"), ("is_paused", "paused"),
                        ("concurrency_limit", "concurrency_limit"), ("base_job_template", "base_job_template")):
        if key in body.model_fields_set:
            fields[column] = getattr(body, key)
    if fields.get("paused") is None:
        fields.pop("paused", None)
    if fields:
        storage.update_work_pool(name, **fields)
    else:
        storage.read_work_pool(name)
    return Response(status_code=204)


@router.delete("/{name}", status_code=204)
def delete_work_pool(name: str, storage: Storage) -> Response:
    storage.delete_work_pool(name)
    return Response(status_code=204)


@router.post("/{name}/get_scheduled_flow_runs")
def get_scheduled_flow_runs(name: str, body: ScheduledRunsQuery, storage: Storage) -> JSONResponse:
    """Due runs of the pool's queues (those in `work_queue_names`, or all), by queue priority then scheduled time,
    in Prefect's WorkerFlowRunResponse shape; claimed for `worker_name` when given."""
    pool = storage.read_work_pool(name)
    limit = body.limit if body.limit is not None else 10
    if body.worker_name:
        storage.worker_heartbeat(name, body.worker_name)
        runs = storage.claim_pool_runs(name, body.worker_name, limit, work_queue_names=body.work_queue_names)
    else:
        runs = storage.read_pool_due_runs(name, before=body.scheduled_before or time.time(),
                                          after=body.scheduled_after, limit=limit,
                                          work_queue_names=body.work_queue_names)
    return respond([{"work_pool_id": str(pool.id), "work_queue_id": _str(r.work_queue_id), "flow_run": flow_run_json(r)}
                    for r in runs])


@router.post("/{name}/workers/heartbeat", status_code=204)
def worker_heartbeat(name: str, body: Heartbeat, storage: Storage) -> Response:
    from ...runstore.work_pools import SERVE_POOL

    if name != SERVE_POOL:
        storage.read_work_pool(name)  # 404 naming the command that creates it
    storage.worker_heartbeat(name, body.name)
    return Response(status_code=204)


@router.post("/{name}/workers/filter")
def read_workers(name: str, storage: Storage, body: WorkersFilter | None = None) -> JSONResponse:
    body = body or WorkersFilter()
    storage.read_work_pool(name)
    workers = storage.read_workers(name)[body.offset:body.offset + body.limit]
    return respond([worker_json(w) for w in workers])


@router.post("/{name}/crash_orphaned_runs")
def crash_orphaned_runs(name: str, storage: Storage, timeout: float | None = None) -> JSONResponse:
    """Crash the runs of the pool's workers whose heartbeats stopped `timeout` s ago (distributary's; the
    server's heartbeat service does this for every pool)."""
    from ... import settings

    if timeout is None:
        timeout = float(settings.get("WORKER_HEARTBEAT_TIMEOUT"))
    if timeout <= 0:
        raise ConfigurationError(f"timeout must be positive, got {timeout}")
    return respond(storage.crash_orphaned_runs(name, timeout=timeout))
