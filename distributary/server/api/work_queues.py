"""Work queues on Prefect's paths: `/work_pools/{pool}/queues` (create, filter, read, change and delete a pool's
queue by name) and `/work_queues/{id}` (read, change, delete by id, as Prefect's client's `update_work_queue` and
`delete_work_queue_by_id` call them). Responses are Prefect's WorkQueueResponse."""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from pydantic import Field

from ...schemas import objects as O
from ..deps import Storage
from ._common import Body, Page, respond

pool_router = APIRouter(prefix="/work_pools", tags=["work pools"])
router = APIRouter(prefix="/work_queues", tags=["work queues"])


class WorkQueueCreate(Body):
    name: str = Field(min_length=1)
    description: str | None = None
    is_paused: bool = False
    concurrency_limit: int | None = Field(default=None, ge=0)
    priority: int | None = Field(default=None, ge=1)
    filter: dict[str, Any] | None = None  # deprecated in Prefect; accepted, not used


class WorkQueueUpdate(Body):
    name: str | None = None
    description: str | None = None
    is_paused: bool | None = None
    concurrency_limit: int | None = Field(default=None, ge=0)
    priority: int | None = Field(default=None, ge=1)
    last_polled: dt.datetime | None = None
    filter: dict[str, Any] | None = None
    OPAQUE = Body.OPAQUE | {"concurrency_limit"}  # null clears the limit


class _Any(Body):
    any_: list[str] | None = None


class WorkQueueFilter(Body):
    id: _Any | None = None
    name: _Any | None = None


class WorkQueuesFilter(Page):
    work_queues: WorkQueueFilter | None = None


def work_queue_json(q: O.WorkQueue) -> dict[str, Any]:
    d = q.model_dump(mode="json")
    d.update(status=q.status, filter=None)
    return d


def _changes(body: WorkQueueUpdate) -> dict[str, Any]:
    """The fields sent (a `concurrency_limit` of null clears the limit, as in Prefect)."""
    names = {"is_paused": "paused"}
    values = {names.get(k, k): getattr(body, k) for k in body.model_fields_set if k != "filter"}
    return {k: v for k, v in values.items() if v is not None or k == "concurrency_limit"}


@pool_router.post("/{pool}/queues", status_code=201)
def create_work_queue(pool: str, body: WorkQueueCreate, storage: Storage) -> JSONResponse:
    if any(q.name == body.name for q in storage.read_work_queues(pool, names=[body.name])):
        return JSONResponse({"detail": f"work pool {pool!r} already has a queue {body.name!r}"}, status_code=409)
    q = storage.create_work_queue(pool, body.name, description=body.description, priority=body.priority,
                                  concurrency_limit=body.concurrency_limit, paused=body.is_paused)
    return respond(work_queue_json(q), 201)


@pool_router.post("/{pool}/queues/filter")
def read_work_queues(pool: str, storage: Storage, body: WorkQueuesFilter | None = None) -> JSONResponse:
    body = body or WorkQueuesFilter()
    flt = body.work_queues
    names = flt.name.any_ if flt is not None and flt.name is not None else None
    queues = storage.read_work_queues(pool, names=names)
    if flt is not None and flt.id is not None and flt.id.any_ is not None:
        ids = {str(uuid.UUID(i)) for i in flt.id.any_}
        queues = [q for q in queues if str(q.id) in ids]
    return respond([work_queue_json(q) for q in queues[body.offset:body.offset + body.limit]])


@pool_router.get("/{pool}/queues/{name}")
def read_work_queue_by_name(pool: str, name: str, storage: Storage) -> JSONResponse:
    return respond(work_queue_json(storage.read_work_queue_by_name(pool, name)))


@pool_router.patch("/{pool}/queues/{name}", status_code=204)
def update_work_queue_by_name(pool: str, name: str, body: WorkQueueUpdate, storage: Storage) -> Response:
    storage.update_work_queue(storage.read_work_queue_by_name(pool, name).id, **_changes(body))
    return Response(status_code=204)


@pool_router.delete("/{pool}/queues/{name}", status_code=204)
def delete_work_queue_by_name(pool: str, name: str, storage: Storage) -> Response:
    storage.delete_work_queue(storage.read_work_queue_by_name(pool, name).id)
    return Response(status_code=204)


@router.get("/{id}")
def read_work_queue(id: uuid.UUID, storage: Storage) -> JSONResponse:
    return respond(work_queue_json(storage.read_work_queue(id)))


@router.patch("/{id}", status_code=204)
def update_work_queue(id: uuid.UUID, body: WorkQueueUpdate, storage: Storage) -> Response:
    storage.update_work_queue(id, **_changes(body))
    return Response(status_code=204)


@router.delete("/{id}", status_code=204)
def delete_work_queue(id: uuid.UUID, storage: Storage) -> Response:
    storage.delete_work_queue(id)
    return Response(status_code=204)
