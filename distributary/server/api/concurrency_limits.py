"""`/v2/concurrency_limits` (global concurrency limits and rate limits, their slots and leases) and
`/concurrency_limits` (tag-based task-run limits, which are the v2 limits named `tag:TAG`), on Prefect 3's paths
and JSON shapes."""
from __future__ import annotations

import uuid
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Response
from fastapi.responses import JSONResponse
from pydantic import Field

from ...errors import ConfigurationError
from ...schemas.concurrency import TAG_PREFIX, ConcurrencyLimit, GlobalConcurrencyLimit
from ..deps import Storage
from ._common import Body as Model
from ._common import Page, respond

router = APIRouter(prefix="/v2/concurrency_limits", tags=["Concurrency Limits V2"])
tag_router = APIRouter(prefix="/concurrency_limits", tags=["Concurrency Limits"])


class LimitCreate(Model):
    name: str = Field(..., min_length=1, max_length=255)
    limit: int = Field(..., ge=0)
    active: bool = True
    active_slots: int = Field(0, ge=0)
    denied_slots: int = Field(0, ge=0)
    slot_decay_per_second: float = Field(0.0, ge=0)


class LimitUpdate(Model):
    name: str | None = Field(None, min_length=1, max_length=255)
    limit: int | None = Field(None, ge=0)
    active: bool | None = None
    active_slots: int | None = Field(None, ge=0)
    denied_slots: int | None = Field(None, ge=0)
    slot_decay_per_second: float | None = Field(None, ge=0)


class TagLimitCreate(Model):
    tag: str = Field(..., min_length=1)
    concurrency_limit: int = Field(..., ge=0)


class Increment(Model):
    slots: int = Field(..., gt=0)
    names: list[str] = Field(..., min_length=1)
    mode: Literal["concurrency", "rate_limit"] = "concurrency"
    create_if_missing: bool | None = None  # deprecated in Prefect 3: limits are created beforehand


class IncrementWithLease(Increment):
    lease_duration: float = Field(300.0, gt=0, le=86400, description="The duration of the lease in seconds.")
    holder: dict[str, Any] | None = None


class Decrement(Model):
    slots: int = Field(..., gt=0)
    names: list[str] = Field(..., min_length=1)
    occupancy_seconds: float | None = Field(None, gt=0)
    create_if_missing: bool | None = None


class LeaseRef(Model):
    lease_id: uuid.UUID


class Renewal(Model):
    lease_duration: float = Field(300.0, gt=0, le=86400)


class Reset(Model):
    slot_override: list[uuid.UUID] | None = None


class TagSlots(Model):
    names: list[str]
    task_run_id: uuid.UUID


def limit_json(g: GlobalConcurrencyLimit) -> dict[str, Any]:
    return g.model_dump(mode="json")


def tag_limit_json(c: ConcurrencyLimit) -> dict[str, Any]:
    return c.model_dump(mode="json")


def _minimal(limits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"id": str(x["id"]), "name": x["name"], "limit": x["limit"]} for x in limits]


def _take(storage: Any, names: list[str], slots: int, mode: str, lease: float | None,
          holder: dict[str, Any] | None = None) -> Any:
    try:
        got = storage.acquire_concurrency_slots(names, slots, mode=mode, lease_seconds=lease, holder=holder)
    except ConfigurationError as exc:
        raise HTTPException(422, str(exc)) from exc
    if not got.acquired:
        headers = {"Retry-After": str(got.retry_after if got.retry_after is not None else 0.5)}
        raise HTTPException(423, "the concurrency limit has no free slot", headers=headers)
    return got


# -- /v2/concurrency_limits ---------------------------------------------------------------------------------------
@router.post("/", status_code=201)
def create_limit(body: LimitCreate, storage: Storage) -> JSONResponse:
    try:
        got = storage.create_concurrency_limit(body.name, body.limit, active=body.active,
                                               slot_decay_per_second=body.slot_decay_per_second,
                                               active_slots=body.active_slots, denied_slots=body.denied_slots)
    except ConfigurationError as exc:
        return respond({"detail": str(exc)}, 409)
    return respond(limit_json(got), 201)


@router.post("/filter")
def read_limits(storage: Storage, body: Page | None = None) -> JSONResponse:
    body = body or Page()
    return respond([limit_json(g) for g in storage.read_concurrency_limits(limit=body.limit, offset=body.offset)])


@router.post("/increment")
def increment(body: Increment, storage: Storage) -> JSONResponse:
    """Take slots without a lease (give them back with `/decrement`; a rate limit's decay)."""
    return respond(_minimal(_take(storage, body.names, body.slots, body.mode, None).limits))


@router.post("/increment-with-lease")
def increment_with_lease(body: IncrementWithLease, storage: Storage) -> JSONResponse:
    got = _take(storage, body.names, body.slots, body.mode,
                body.lease_duration if body.mode == "concurrency" else None, body.holder)
    return respond({"lease_id": str(got.lease_id or uuid.uuid4()), "limits": _minimal(got.limits)})


@router.post("/decrement")
def decrement(body: Decrement, storage: Storage) -> JSONResponse:
    return respond(_minimal(storage.release_concurrency_slots_by_name(body.names, body.slots,
                                                                      body.occupancy_seconds)))


@router.post("/decrement-with-lease", status_code=204)
def decrement_with_lease(body: LeaseRef, storage: Storage) -> Response:
    storage.release_concurrency_slots(body.lease_id)
    return Response(status_code=204)


@router.post("/leases/{lease_id}/renew", status_code=204)
def renew_lease(lease_id: uuid.UUID, storage: Storage, body: Renewal | None = None) -> Response:
    if not storage.renew_concurrency_lease(lease_id, body.lease_duration if body else 300.0):
        raise HTTPException(404, "Lease not found")
    return Response(status_code=204)


@router.get("/{id_or_name}")
def read_limit(id_or_name: str, storage: Storage) -> JSONResponse:
    return respond(limit_json(storage.read_concurrency_limit(id_or_name)))


@router.patch("/{id_or_name}", status_code=204)
def update_limit(id_or_name: str, body: LimitUpdate, storage: Storage) -> Response:
    try:
        storage.update_concurrency_limit(id_or_name, **body.model_dump(exclude_none=True))
    except ConfigurationError as exc:
        raise HTTPException(422, str(exc)) from exc
    return Response(status_code=204)


@router.delete("/{id_or_name}", status_code=204)
def delete_limit(id_or_name: str, storage: Storage) -> Response:
    storage.delete_concurrency_limit(id_or_name)
    return Response(status_code=204)


# -- /concurrency_limits (tag-based task-run limits) --------------------------------------------------------------
@tag_router.post("/")
def create_tag_limit(body: TagLimitCreate, storage: Storage) -> JSONResponse:
    got, created = storage.create_tag_concurrency_limit(body.tag, body.concurrency_limit)
    return respond(tag_limit_json(got), 201 if created else 200)


@tag_router.post("/filter")
def read_tag_limits(storage: Storage, body: Page | None = None) -> JSONResponse:
    body = body or Page()
    return respond([tag_limit_json(c) for c in storage.read_tag_concurrency_limits(limit=body.limit,
                                                                                     offset=body.offset)])


@tag_router.get("/tag/{tag}")
def read_tag_limit(tag: str, storage: Storage) -> JSONResponse:
    return respond(tag_limit_json(storage.read_tag_concurrency_limit(tag)))


@tag_router.post("/tag/{tag}/reset")
def reset_tag_limit(tag: str, storage: Storage, body: Reset | None = None) -> JSONResponse:
    storage.reset_tag_concurrency_limit(tag)
    for run_id in (body.slot_override if body else None) or ():  # the given task runs hold the slots again
        storage.acquire_concurrency_slots([TAG_PREFIX + tag], 1, lease_seconds=300.0,
                                          holder={"type": "task_run", "id": str(run_id)})
    return respond(None)


@tag_router.delete("/tag/{tag}")
def delete_tag_limit(tag: str, storage: Storage) -> Response:
    storage.delete_tag_concurrency_limit(tag)
    return Response(status_code=200)


@tag_router.post("/increment")
def increment_tags(body: TagSlots, storage: Storage) -> JSONResponse:
    """Take a slot of each tag for the task run (Prefect's v1 client); `/decrement` gives them back."""
    got = _take(storage, [TAG_PREFIX + n for n in body.names], 1, "concurrency", 300.0,
                {"type": "task_run", "id": str(body.task_run_id)})
    return respond([dict(m, name=m["name"][len(TAG_PREFIX):]) for m in _minimal(got.limits)])


@tag_router.post("/decrement")
def decrement_tags(body: TagSlots, storage: Storage) -> JSONResponse:
    storage.release_holder_slots([TAG_PREFIX + n for n in body.names],
                                 {"type": "task_run", "id": str(body.task_run_id)})
    return respond([])


@tag_router.get("/{limit_id}")
def read_tag_limit_by_id(limit_id: uuid.UUID, storage: Storage) -> JSONResponse:
    return respond(tag_limit_json(storage.read_tag_concurrency_limit(str(limit_id))))


@tag_router.delete("/{limit_id}")
def delete_tag_limit_by_id(limit_id: uuid.UUID, storage: Storage) -> Response:
    storage.delete_tag_concurrency_limit(str(limit_id))
    return Response(status_code=200)
