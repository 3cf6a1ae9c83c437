"""What the resource routers share: request bodies that read Prefect's filter JSON, pagination limits, and the
records in Prefect's JSON shapes (what `prefect.client` parses; distributary's own HTTP client reads them too)."""
from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterable
from typing import Any, ClassVar

import orjson
from fastapi import Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ...schemas import objects as O

LIMIT_DEFAULT = 200     # Prefect's PREFECT_API_DEFAULT_LIMIT: what a filter without `limit` returns
LIMIT_MAX = 10_000      # the largest page (distributary's own client pages through more)
STATE_NAMESPACE = uuid.UUID("0c7b6f52-52b4-4d0e-9a3c-3c1d1f5f3a10")


def clean(value: Any) -> Any:
    """Prefect's client sends every filter field, unset ones as null, with `"operator": "and_"`: drop those, so
    what is left is what the caller asked for (and an unknown field that is set is a 422 naming it)."""
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items() if v is not None and not (k == "operator" and v == "and_")}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value


class Body(BaseModel):
    """A request body: unknown fields are refused (422 names them); nulls and Prefect's default operator are
    ignored, except in the fields named in `OPAQUE` (user data such as a variable's value, kept as sent)."""
    model_config = ConfigDict(extra="forbid")
    OPAQUE: ClassVar[frozenset[str]] = frozenset({"value", "data", "parameters", "task_inputs", "metadata_",
                                                   "state_details"})

    @model_validator(mode="before")
    @classmethod
    def _clean(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        keep = cls.OPAQUE
        return {k: v if k in keep else clean(v) for k, v in data.items()
                if k in keep or (v is not None and not (k == "operator" and v == "and_"))}


class Page(Body):
    limit: int = Field(default=LIMIT_DEFAULT, ge=0, le=LIMIT_MAX)
    offset: int = Field(default=0, ge=0)


def respond(content: Any, status_code: int = 200) -> JSONResponse:
    """`content` is JSON-ready already (the shapes below): skip FastAPI's generic encoder."""
    return JSONResponse(content, status_code=status_code)


def respond_bytes(content: Any, status_code: int = 200) -> Response:
    """`content` rendered by orjson (which embeds the `orjson.Fragment`s of JSON text read from the database)."""
    return Response(orjson.dumps(content), status_code=status_code, media_type="application/json")


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


_UTC = dt.timezone.utc
_NS = STATE_NAMESPACE.bytes


def _iso_epoch(value: float | None) -> str | None:
    """UNIX seconds as `_iso` writes the datetime the run store's models hold for them."""
    return None if value is None else dt.datetime.fromtimestamp(value, _UTC).isoformat()


def _utc(value: float | None) -> dt.datetime | None:
    """UNIX seconds as a datetime for orjson, which writes it as `_iso` does (and faster)."""
    return None if value is None else dt.datetime.fromtimestamp(value, _UTC)


def _state_id(run: Any, ts: str | None, state_type: str) -> str:
    """`uuid5(STATE_NAMESPACE, f"{run}:{ts}:{type}")` as a string, without the UUID object (a page builds 10^4)."""
    h = hashlib.sha1(_NS + f"{run}:{ts}:{state_type}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{(int(h[16], 16) & 3) | 8:x}{h[17:20]}-{h[20:32]}"


def _fragment(text: str | None, empty: bytes) -> Any:
    return orjson.Fragment(empty if text is None or text == "null" else text)


def state_json(state: O.State | None, *, flow_run_id: Any = None, task_run_id: Any = None) -> dict[str, Any] | None:
    if state is None:
        return None
    ts = _iso(state.timestamp)
    run = flow_run_id or task_run_id
    return {"id": _state_id(run, ts, state.type.value), "type": state.type.value,
            "name": state.name, "timestamp": ts, "message": state.message,
            "state_details": {"flow_run_id": _str(flow_run_id), "task_run_id": _str(task_run_id)},
            "data": None, "result_ref": state.result_ref}


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def flow_json(flow: O.Flow) -> dict[str, Any]:
    created = _iso(flow.created)
    return {"id": str(flow.id), "created": created, "updated": created, "name": flow.name, "tags": [],
            "labels": {}}


def _run_common(run: O.FlowRun | O.TaskRun) -> dict[str, Any]:
    # by hand rather than model_dump(mode="json"): a page of 10^4 task runs is built here
    seconds = run.total_run_time.total_seconds()
    created = _iso(run.created)
    return {"id": str(run.id), "name": run.name, "tags": list(run.tags), "run_count": run.run_count,
            "start_time": _iso(run.start_time), "end_time": _iso(run.end_time), "total_run_time": seconds,
            "estimated_run_time": seconds, "state_type": None if run.state_type is None else run.state_type.value,
            "state_name": run.state_name, "created": created,
            "updated": _iso(run.state.timestamp) if run.state is not None else created, "labels": {}}


def flow_run_json(run: O.FlowRun) -> dict[str, Any]:
    d = _run_common(run)
    d.update(flow_id=str(run.flow_id), flow_version=run.flow_version, parameters=run.parameters,
             parent_task_run_id=_str(run.parent_task_run_id), parent_flow_run_id=_str(run.parent_flow_run_id),
             expected_start_time=_iso(run.expected_start_time))
    d["state"] = state_json(run.state, flow_run_id=run.id)
    d["state_id"] = d["state"]["id"] if d["state"] else None
    d.update(deployment_id=_str(run.deployment_id), work_queue_name=run.work_queue_name,
             work_queue_id=_str(run.work_queue_id), work_pool_name=run.work_pool_name,
             idempotency_key=run.idempotency_key, context={}, auto_scheduled=run.auto_scheduled,
             job_variables=run.job_variables, infrastructure_pid=run.infrastructure_pid, created_by=None,
             worker_name=run.worker_name)
    return d


def flow_run_rows_json(rows: Iterable[Any]) -> list[dict[str, Any]]:
    """`flow_run_json` of each row of `SqlRunStorage.read_flow_run_rows` (JSON columns as text), for orjson
    (`respond_bytes`): the same JSON, built without a model per row."""
    out = []
    null = orjson.Fragment(b"null")
    for r in rows:
        # whole microseconds, as the models' timedelta holds it
        rid, created, seconds = r.id, _utc(r.created), dt.timedelta(seconds=r.total_run_time or 0.0).total_seconds()
        state: dict[str, Any] | None = None
        if r.state_type is not None:
            ts = _iso_epoch(r.state_ts)
            state = {"id": _state_id(rid, ts, r.state_type), "type": r.state_type, "name": r.state_name,
                     "timestamp": ts, "message": r.state_message,
                     "state_details": {"flow_run_id": rid, "task_run_id": None}, "data": None,
                     "result_ref": null if r.result_ref is None else orjson.Fragment(r.result_ref)}
        out.append({
            "id": rid, "name": r.name, "tags": _fragment(r.tags, b"[]"), "run_count": r.run_count,
            "start_time": _utc(r.start_time), "end_time": _utc(r.end_time), "total_run_time": seconds,
            "estimated_run_time": seconds, "state_type": r.state_type, "state_name": r.state_name,
            "created": created, "updated": state["timestamp"] if state is not None else created, "labels": {},
            "flow_id": r.flow_id, "flow_version": r.flow_version, "parameters": _fragment(r.parameters, b"{}"),
            "parent_task_run_id": r.parent_task_run_id, "parent_flow_run_id": r.parent_flow_run_id,
            "expected_start_time": _utc(r.expected_start_time), "state": state,
            "state_id": state["id"] if state is not None else None, "deployment_id": r.deployment_id,
            "work_queue_name": r.work_queue_name, "work_queue_id": r.work_queue_id,
            "work_pool_name": r.work_pool_name, "idempotency_key": r.idempotency_key,
            "context": {}, "auto_scheduled": bool(r.auto_scheduled),
            "job_variables": _fragment(r.job_variables, b"{}"), "infrastructure_pid": r.infrastructure_pid,
            "created_by": None,
            "worker_name": r.worker_name})
    return out


def task_run_json(run: O.TaskRun) -> dict[str, Any]:
    d = _run_common(run)
    inputs = run.task_inputs or {}
    # Prefect's shape is {name: [input, ...]}; anything else is not shown
    d.update(task_key=run.task_key, dynamic_key=run.dynamic_key, cache_key=run.cache_key,
             flow_run_id=_str(run.flow_run_id),
             task_inputs=inputs if all(isinstance(v, list) for v in inputs.values()) else {})
    d["state"] = state_json(run.state, task_run_id=run.id)
    d["state_id"] = d["state"]["id"] if d["state"] else None
    d.update(task_version=None, flow_run_run_count=0, expected_start_time=d["created"])
    return d


def dependency_json(run: O.TaskRun) -> dict[str, Any]:
    """A task run in `GET /flow_runs/{id}/graph` (Prefect's `DependencyResult`): its upstream task runs are the
    `task_run` inputs it recorded, each once."""
    upstream: dict[str, None] = {}
    for inputs in (run.task_inputs or {}).values():
        for item in inputs if isinstance(inputs, list) else ():
            if isinstance(item, dict) and item.get("input_type") == "task_run" and item.get("id"):
                upstream[str(item["id"])] = None
    d = task_run_json(run)
    return {"id": d["id"], "name": d["name"],
            "upstream_dependencies": [{"input_type": "task_run", "id": i} for i in upstream],
            "state": d["state"], "expected_start_time": d["expected_start_time"], "start_time": d["start_time"],
            "end_time": d["end_time"], "total_run_time": d["total_run_time"],
            "estimated_run_time": d["estimated_run_time"], "untrackable_result": False}


def log_json(log: O.Log) -> dict[str, Any]:
    ts = _iso(log.timestamp)
    # Prefect's log ids are UUIDs: the row number, as a UUID
    return {"id": str(uuid.UUID(int=log.id or 0)), "created": ts, "updated": ts, "name": log.name,
            "level": log.level, "message": log.message, "timestamp": ts, "flow_run_id": _str(log.flow_run_id),
            "task_run_id": _str(log.task_run_id)}


def artifact_json(art: O.Artifact) -> dict[str, Any]:
    d = art.model_dump(mode="json")
    d["metadata_"] = None
    return d


def variable_json(var: O.Variable) -> dict[str, Any]:
    return var.model_dump(mode="json")
