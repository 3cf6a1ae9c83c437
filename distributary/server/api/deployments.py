"""`/deployments`: read deployments and create runs of them (Prefect's `create_flow_run`, the seed's `curl` form).

Deployments are registered by `flow.serve()`, `flow.deploy()` or `distributary deploy` on the machine that holds
the run store; a run created here is picked up by the `serve()` process or worker polling that store.
"""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from ...schemas import objects as O
from ..deps import Storage
from ._common import Body, Page, flow_run_json, respond

router = APIRouter(prefix="/deployments", tags=["deployments"])


class _Any(BaseModel):
    model_config = ConfigDict(extra="forbid")
    any_: list[str] | None = None


class DeploymentFilter(BaseModel):
    """The parts of Prefect's deployment filter the store answers: names (`deployment` part) and ids."""
    model_config = ConfigDict(extra="forbid")
    id: _Any | None = None
    name: _Any | None = None


class DeploymentsFilter(Page):
    deployments: DeploymentFilter | None = None


class DeploymentFlowRunCreate(Body):
    parameters: dict[str, Any] | None = None
    tags: list[str] | None = None
    idempotency_key: str | None = None
    job_variables: dict[str, Any] | None = None
    state: dict[str, Any] | None = None  # Prefect's client may send a Scheduled state with its scheduled_time


def deployment_json(dep: O.Deployment) -> dict[str, Any]:
    d = dep.model_dump(mode="json")
    d["concurrency_options"] = d.get("concurrency_options")
    return d


def _scheduled_time(state: dict[str, Any] | None) -> dt.datetime | None:
    when = ((state or {}).get("state_details") or {}).get("scheduled_time")
    return dt.datetime.fromisoformat(when.replace("Z", "+00:00")) if isinstance(when, str) else None


@router.post("/filter")
def read_deployments(storage: Storage, body: DeploymentsFilter | None = None) -> JSONResponse:
    body = body or DeploymentsFilter()
    flt = body.deployments or DeploymentFilter()
    ids = flt.id.any_ if flt.id is not None else None
    deps = storage.read_deployments(ids=ids, limit=None if flt.name is not None else body.limit,
                                    offset=0 if flt.name is not None else body.offset)
    if flt.name is not None and flt.name.any_ is not None:  # the store filters by full name; Prefect by name
        wanted = set(flt.name.any_)
        deps = [d for d in deps if d.name in wanted][body.offset:body.offset + body.limit]
    return respond([deployment_json(d) for d in deps])


@router.get("/name/{flow_name}/{deployment_name}")
def read_deployment_by_name(flow_name: str, deployment_name: str, storage: Storage) -> JSONResponse:
    return respond(deployment_json(storage.read_deployment_by_name(f"{flow_name}/{deployment_name}")))


@router.get("/{deployment_id}")
def read_deployment(deployment_id: uuid.UUID, storage: Storage) -> JSONResponse:
    return respond(deployment_json(storage.read_deployment(deployment_id)))


@router.post("/{deployment_id}/create_flow_run", status_code=201)
def create_flow_run(deployment_id: uuid.UUID, storage: Storage,
                    body: DeploymentFlowRunCreate | None = None) -> JSONResponse:
    """A `Scheduled` run of the deployment, its parameters merged over the deployment's defaults; with an
    `idempotency_key` already used, the existing run is returned."""
    body = body or DeploymentFlowRunCreate()
    run = storage.create_flow_run_from_deployment(
        deployment_id, parameters=body.parameters, tags=body.tags, scheduled_time=_scheduled_time(body.state),
        idempotency_key=body.idempotency_key, job_variables=body.job_variables)
    return respond(flow_run_json(run), 201)
