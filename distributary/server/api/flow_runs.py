"""`/flow_runs`: create, filter, count, read, graph, set_state, delete; `/flow_run_states`: a flow run's history."""
from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from ...runstore.batch import Batch
from ...schemas import filters as F
from ...schemas import sorting as S
from ...states import State, StateType
from ..deps import Storage, read_in_thread
from ._common import Body, Page, dependency_json, flow_run_json, flow_run_rows_json, respond, respond_bytes, state_json

router = APIRouter(prefix="/flow_runs", tags=["flow runs"])
states_router = APIRouter(prefix="/flow_run_states", tags=["flow runs"])


class StateCreate(Body):
    type: StateType
    name: str | None = None
    message: str | None = None
    timestamp: dt.datetime | None = None
    data: Any = None             # results stay in the result store: accepted from Prefect clients, not kept
    state_details: dict[str, Any] | None = None

    def to_state(self) -> State:
        return State(self.type, name=self.name, message=self.message, timestamp=self.timestamp)


class SetState(Body):
    state: StateCreate
    force: bool = False


class FlowRunCreate(Body):
    flow_id: uuid.UUID
    name: str | None = None
    parameters: dict[str, Any] = {}
    tags: list[str] = []
    parent_task_run_id: uuid.UUID | None = None
    flow_version: str | None = None
    state: StateCreate | None = None


class FlowRunsFilter(Page):
    flows: F.FlowFilter | None = None
    flow_runs: F.FlowRunFilter | None = None
    task_runs: F.TaskRunFilter | None = None
    sort: S.FlowRunSort | None = None


class FlowRunsCount(Body):
    flows: F.FlowFilter | None = None
    flow_runs: F.FlowRunFilter | None = None
    task_runs: F.TaskRunFilter | None = None


def orchestration_result(state: Any, *, flow_run_id: Any = None, task_run_id: Any = None) -> dict[str, Any]:
    """Prefect's OrchestrationResult: there are no orchestration rules yet, so every proposal is accepted."""
    return {"status": "ACCEPT", "details": {"type": "accept_details"},
            "state": state_json(state, flow_run_id=flow_run_id, task_run_id=task_run_id)}


@router.post("/", status_code=201)
def create_flow_run(body: FlowRunCreate, storage: Storage) -> JSONResponse:
    flow = storage.read_flow(body.flow_id)  # 404 for an unknown flow
    state = body.state.to_state() if body.state else State(StateType.PENDING)
    rid, now = str(uuid.uuid4()), time.time()
    batch = Batch()
    batch.flow_runs[rid] = {
        "id": rid, "name": body.name or f"{flow.name}-{rid[:8]}", "tags": sorted(body.tags), "run_count": 0,
        "start_time": None, "end_time": None, "total_run_time": 0.0, "state_type": state.type.value,
        "state_name": state.name, "state_message": state.message, "state_ts": state.ts, "result_ref": None,
        "created": now, "flow_id": str(flow.id), "flow_name": flow.name, "flow_version": body.flow_version,
        "parameters": body.parameters, "parent_flow_run_id": None,
        "parent_task_run_id": None if body.parent_task_run_id is None else str(body.parent_task_run_id),
        "expected_start_time": state.ts}
    batch.states.append({"run_id": rid, "type": state.type.value, "name": state.name, "message": state.message,
                         "timestamp": state.ts, "result_ref": None})
    storage.write(batch)
    return respond(flow_run_json(storage.read_flow_run(rid)), 201)


@router.post("/filter")
async def read_flow_runs(storage: Storage, body: FlowRunsFilter | None = None) -> Response:
    f = body or FlowRunsFilter()

    def read() -> Response:
        rows = storage.read_flow_run_rows(flow_filter=f.flows, flow_run_filter=f.flow_runs,
                                          task_run_filter=f.task_runs, sort=f.sort, limit=f.limit, offset=f.offset)
        return respond_bytes(flow_run_rows_json(rows))

    return await read_in_thread(read)


@router.post("/count")
def count_flow_runs(storage: Storage, body: FlowRunsCount | None = None) -> int:
    """How many flow runs match (Prefect's `POST /flow_runs/count`: the filters of `/flow_runs/filter`)."""
    body = body or FlowRunsCount()
    return int(storage.count_flow_runs(flow_filter=body.flows, flow_run_filter=body.flow_runs,
                                       task_run_filter=body.task_runs))


@router.get("/{flow_run_id}/graph")
def read_flow_run_graph(flow_run_id: uuid.UUID, storage: Storage) -> JSONResponse:
    """Prefect's task-run dependency graph of a flow run: each task run with its upstream task runs (from its
    recorded inputs), state and times (`DependencyResult`s, in creation order)."""
    storage.read_flow_run(flow_run_id)  # 404 for an unknown run
    runs = storage.read_task_runs(flow_run_filter=F.FlowRunFilter(id=F.FlowRunFilterId(any_=[flow_run_id])),
                                  sort=S.TaskRunSort.EXPECTED_START_TIME_ASC)
    return respond([dependency_json(r) for r in runs])


@router.get("/{flow_run_id}")
def read_flow_run(flow_run_id: uuid.UUID, storage: Storage) -> JSONResponse:
    return respond(flow_run_json(storage.read_flow_run(flow_run_id)))


@router.post("/{flow_run_id}/set_state", status_code=201)
def set_flow_run_state(flow_run_id: uuid.UUID, body: SetState, storage: Storage) -> JSONResponse:
    """Propose a state (Prefect's route; 201 when accepted, 200 otherwise). `Cancelling` is a cancel: a run that
    has not started becomes Cancelled (REJECT), a running one Cancelling (its runner stops it), a finished one
    is left alone (ABORT, with the reason)."""
    got = storage.propose_flow_run_state(flow_run_id, body.state.to_state(), force=body.force)
    return respond({"status": got.status, "details": got.details,
                    "state": state_json(got.state, flow_run_id=flow_run_id)}, 201 if got.status == "ACCEPT" else 200)


@router.delete("/{flow_run_id}", status_code=204)
def delete_flow_run(flow_run_id: uuid.UUID, storage: Storage) -> Response:
    storage.delete_flow_run(flow_run_id)
    return Response(status_code=204)


@states_router.get("/")
def read_flow_run_states(flow_run_id: uuid.UUID, storage: Storage) -> JSONResponse:
    storage.read_flow_run(flow_run_id)  # 404 for an unknown run
    return respond([state_json(s, flow_run_id=flow_run_id) for s in storage.read_states(flow_run_id)])
