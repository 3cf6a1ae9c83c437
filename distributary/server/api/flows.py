"""`/flows`: create (by name), filter, count, read by id or name."""
from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ...runstore.batch import Batch, flow_id_for
from ...schemas import filters as F
from ...schemas import sorting as S
from ..deps import Storage
from ._common import Body, Page, flow_json, respond

router = APIRouter(prefix="/flows", tags=["flows"])


class FlowCreate(Body):
    name: str
    tags: list[str] = []
    labels: dict[str, Any] = {}


class FlowsFilter(Page):
    flows: F.FlowFilter | None = None
    flow_runs: F.FlowRunFilter | None = None
    sort: S.FlowSort | None = None


@router.post("/", status_code=201)
def create_flow(body: FlowCreate, storage: Storage) -> JSONResponse:
    """Create the flow `name` (its id derives from the name, as every distributary process derives it), or
    return it if it exists."""
    batch = Batch()
    fid = flow_id_for(body.name)
    batch.flows[fid] = {"id": fid, "name": body.name, "created": time.time()}
    storage.write(batch)
    return respond(flow_json(storage.read_flow(fid)), 201)


@router.post("/filter")
def read_flows(storage: Storage, body: FlowsFilter | None = None) -> JSONResponse:
    body = body or FlowsFilter()
    flows = storage.read_flows(flow_filter=body.flows, flow_run_filter=body.flow_runs, sort=body.sort,
                               limit=body.limit, offset=body.offset)
    return respond([flow_json(f) for f in flows])


class FlowsCount(Body):
    flows: F.FlowFilter | None = None
    flow_runs: F.FlowRunFilter | None = None


@router.post("/count")
def count_flows(storage: Storage, body: FlowsCount | None = None) -> int:
    """How many flows match (Prefect's `POST /flows/count`: the filters of `/flows/filter`, an integer)."""
    body = body or FlowsCount()
    return int(storage.count_flows(flow_filter=body.flows, flow_run_filter=body.flow_runs))


@router.get("/name/{name}")
def read_flow_by_name(name: str, storage: Storage) -> JSONResponse:
    return respond(flow_json(storage.read_flow_by_name(name)))


@router.get("/{flow_id}")
def read_flow(flow_id: uuid.UUID, storage: Storage) -> JSONResponse:
    return respond(flow_json(storage.read_flow(flow_id)))
