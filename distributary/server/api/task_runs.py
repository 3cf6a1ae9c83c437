"""`/task_runs`: create, filter, count, read, set_state; `/task_run_states`: a task run's history."""
from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ...runstore.batch import Batch
from ...schemas import filters as F
from ...schemas import objects as O
from ...schemas import sorting as S
from ...states import State, StateType
from ..deps import Storage
from ._common import Body, Page, respond, state_json, task_run_json
from .flow_runs import SetState, StateCreate, orchestration_result

router = APIRouter(prefix="/task_runs", tags=["task runs"])
states_router = APIRouter(prefix="/task_run_states", tags=["task runs"])


class TaskRunCreate(Body):
    id: uuid.UUID | None = None
    name: str | None = None
    flow_run_id: uuid.UUID | None = None
    task_key: str
    dynamic_key: str
    cache_key: str | None = None
    tags: list[str] = []
    task_inputs: dict[str, Any] = {}
    state: StateCreate | None = None


class TaskRunsFilter(Page):
    flows: F.FlowFilter | None = None
    flow_runs: F.FlowRunFilter | None = None
    task_runs: F.TaskRunFilter | None = None
    sort: S.TaskRunSort | None = None


class TaskRunsCount(Body):
    task_runs: F.TaskRunFilter | None = None


def _history_item(st: O.State | State) -> list[Any]:
    if isinstance(st, State):
        return [st.type.value, st.name, st.message, st.ts]
    item = [st.type.value, st.name, st.message, st.timestamp.timestamp()]
    return item + [st.result_ref] if st.result_ref is not None else item


def _row(rid: str, name: str, task_key: str, dynamic_key: str, cache_key: str | None, flow_run_id: Any,
         tags: list[str], task_inputs: Any, state: State, history: list[list[Any]], created: float,
         run_count: int = 0, start: float | None = None, end: float | None = None) -> dict[str, Any]:
    if state.type is StateType.RUNNING and start is None:
        start = state.ts
    if state.is_final() and end is None:
        end = state.ts
    return {"id": rid, "name": name, "tags": sorted(tags), "run_count": run_count, "start_time": start,
            "end_time": end, "total_run_time": (end - start) if start is not None and end is not None else 0.0,
            "state_type": state.type.value, "state_name": state.name, "state_message": state.message,
            "state_ts": state.ts, "result_ref": None, "created": created, "task_key": task_key,
            "dynamic_key": dynamic_key, "cache_key": cache_key,
            "flow_run_id": None if flow_run_id is None else str(flow_run_id), "task_inputs": task_inputs or None,
            "state_history": history}


@router.post("/", status_code=201)
def create_task_run(body: TaskRunCreate, storage: Storage) -> JSONResponse:
    state = body.state.to_state() if body.state else State(StateType.PENDING)
    rid = str(body.id or uuid.uuid4())
    batch = Batch()
    batch.task_runs[rid] = _row(rid, body.name or f"{body.task_key}-{body.dynamic_key}", body.task_key,
                                body.dynamic_key, body.cache_key, body.flow_run_id, body.tags, body.task_inputs,
                                state, [_history_item(state)], time.time())
    storage.write(batch)
    return respond(task_run_json(storage.read_task_run(rid)), 201)


@router.post("/filter")
def read_task_runs(storage: Storage, body: TaskRunsFilter | None = None) -> JSONResponse:
    body = body or TaskRunsFilter()
    runs = storage.read_task_runs(flow_filter=body.flows, flow_run_filter=body.flow_runs,
                                  task_run_filter=body.task_runs, sort=body.sort, limit=body.limit,
                                  offset=body.offset)
    return respond([task_run_json(r) for r in runs])


@router.post("/count")
def count_task_runs(storage: Storage, body: TaskRunsCount | None = None) -> int:
    return int(storage.count_task_runs((body or TaskRunsCount()).task_runs))


@router.get("/{task_run_id}")
def read_task_run(task_run_id: uuid.UUID, storage: Storage) -> JSONResponse:
    return respond(task_run_json(storage.read_task_run(task_run_id)))


@router.post("/{task_run_id}/set_state", status_code=201)
def set_task_run_state(task_run_id: uuid.UUID, body: SetState, storage: Storage) -> JSONResponse:
    run = storage.read_task_run(task_run_id)  # 404 for an unknown run
    state = body.state.to_state()
    history = [_history_item(s) for s in storage.read_states(task_run_id)] + [_history_item(state)]
    batch = Batch()
    batch.task_runs[str(run.id)] = _row(
        str(run.id), run.name, run.task_key, run.dynamic_key, run.cache_key, run.flow_run_id, run.tags,
        run.task_inputs, state, history, run.created.timestamp() if run.created else time.time(),
        run_count=run.run_count + (state.type is StateType.RUNNING),
        start=run.start_time.timestamp() if run.start_time else None,
        end=run.end_time.timestamp() if run.end_time else None)
    storage.write(batch)
    return respond(orchestration_result(storage.read_task_run(task_run_id).state, task_run_id=task_run_id), 201)


@states_router.get("/")
def read_task_run_states(task_run_id: uuid.UUID, storage: Storage) -> JSONResponse:
    storage.read_task_run(task_run_id)  # 404 for an unknown run
    return respond([state_json(s, task_run_id=task_run_id) for s in storage.read_states(task_run_id)])
