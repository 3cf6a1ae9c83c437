"""distributary's own flow-run routes for the processes that run deployments (`serve()` and workers): claim a
due run atomically, record where a run was submitted (`PATCH`, Prefect's `infrastructure_pid`), cancel a run, which of a set of runs were asked to cancel, and mark Late runs.

Prefect does these through `set_state` and its orchestration rules; here each is one call on the run store,
with the same guarantees over HTTP as on the database (of several claimants exactly one wins).
"""
from __future__ import annotations

import uuid

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import Field

from ..deps import Storage
from ._common import Body, flow_run_json, respond

router = APIRouter(prefix="/flow_runs", tags=["flow runs"])


class Claim(Body):
    state_name: str = "Pending"
    message: str | None = None
    worker_name: str | None = None


class RunIds(Body):
    ids: list[uuid.UUID] = Field(max_length=10_000)


class FlowRunUpdate(Body):
    infrastructure_pid: str = Field(max_length=255)


class MarkLate(Body):
    late_after: float | None = Field(default=None, ge=0)
    deployment_ids: list[uuid.UUID] | None = None


@router.post("/{flow_run_id}/claim")
def claim_flow_run(flow_run_id: uuid.UUID, storage: Storage, body: Claim | None = None) -> JSONResponse:
    """Scheduled (or Late) -> Pending, atomically: `{"claimed": true}` for exactly one of several claimants."""
    body = body or Claim()
    return respond({"claimed": storage.claim_flow_run(flow_run_id, state_name=body.state_name,
                                                      message=body.message, worker_name=body.worker_name)})


@router.patch("/{flow_run_id}", status_code=204)
def update_flow_run(flow_run_id: uuid.UUID, body: FlowRunUpdate, storage: Storage) -> None:
    """Prefect's flow-run update, for the field workers set: `infrastructure_pid` (where the run was submitted)."""
    storage.set_infrastructure_pid(flow_run_id, body.infrastructure_pid)


@router.post("/{flow_run_id}/cancel")
def cancel_flow_run(flow_run_id: uuid.UUID, storage: Storage) -> JSONResponse:
    """A run that has not started ends Cancelled at once; a running one becomes Cancelling (the process running
    it stops it). 422 for a finished run."""
    return respond(flow_run_json(storage.cancel_flow_run(flow_run_id)))


@router.post("/cancelling")
def read_cancelling(body: RunIds, storage: Storage) -> JSONResponse:
    """Which of these runs were asked to cancel."""
    return respond(sorted(storage.read_cancelling(body.ids)))


@router.post("/mark_late")
def mark_late_runs(storage: Storage, body: MarkLate | None = None) -> JSONResponse:
    """Runs still Scheduled past their time (by `late_after` s) become Late; how many."""
    from ...runstore.deployments import LATE_AFTER

    body = body or MarkLate()
    late_after = LATE_AFTER if body.late_after is None else body.late_after
    return respond(storage.mark_late_runs(late_after=late_after, deployment_ids=body.deployment_ids))
