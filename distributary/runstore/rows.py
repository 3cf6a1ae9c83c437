"""Run records to run-store rows: flow runs, states and logs as row dicts. Task runs go in two steps (in
`compact.py`): a compact flat encoding made where the records live (`compact_task_runs`, cheap, one list) and the
rows made from it where they are written (`task_run_blocks`, in the writer process when there is one)."""
from __future__ import annotations

import logging
import time
from typing import Any

from ..states import StateType
from .batch import flow_id_for
from .compact import jsonable, result_ref_row, text_or_none

_TYPE_NAMES = {t: t.value for t in StateType}


def state_row(run_id: str, state: Any) -> dict[str, Any]:
    ref = state.result_ref
    return {"run_id": run_id, "type": _TYPE_NAMES[state.type], "name": state.name,
            "message": None if state.message is None else str(state.message), "timestamp": state.ts,
            "result_ref": None if ref is None else result_ref_row(ref)}


def flow_run_row(run: Any, state: Any, now: float) -> dict[str, Any]:
    start, end = run.start_ts, run.end_ts
    return {"id": str(run.id), "name": run.name, "tags": sorted(run.tags or ()), "run_count": run.run_count,
            "start_time": start, "end_time": end,
            "total_run_time": (end - start) if start is not None and end is not None else 0.0,
            "state_type": _TYPE_NAMES[state.type], "state_name": state.name,
            "state_message": text_or_none(state.message),
            "state_ts": state.ts, "result_ref": result_ref_row(state.result_ref), "created": now,
            "flow_id": flow_id_for(run.flow_name), "flow_name": run.flow_name, "flow_version": run.flow_version,
            "parameters": jsonable(run.parameters or {}),
            "parent_flow_run_id": text_or_none(run.parent_flow_run_id),
            "parent_task_run_id": text_or_none(getattr(run, "parent_task_run_id", None)),
            "expected_start_time": getattr(run, "expected_start_ts", None) or run.state_history[0].ts}


def log_row(rec: dict[str, Any], task_flow: dict[Any, str]) -> dict[str, Any]:
    run_id, kind = rec.get("run_id"), rec.get("run_kind")
    task_run_id = flow_run_id = None
    if kind == "task":
        task_run_id = run_id
        flow_run_id = rec.get("flow_run_id") or task_flow.get(run_id)
    elif kind == "flow":
        flow_run_id = run_id
    msg = str(rec.get("msg", ""))
    if rec.get("exc_text"):
        msg = f"{msg}\n{rec['exc_text']}"
    return {"flow_run_id": flow_run_id, "task_run_id": task_run_id, "name": str(rec.get("name", "")),
            "level": int(rec.get("levelno", logging.INFO)), "message": msg,
            "timestamp": float(rec.get("created") or time.time())}
