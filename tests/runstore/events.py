"""Run events as the engine emits them, built from real `distributary.runs` records (the sink's input)."""
from __future__ import annotations

import time
import uuid

from distributary import states as S
from distributary.runs import (
    ARTIFACT,
    FLOW_RUN_CREATED,
    LOG,
    RUN_FINISHED,
    STATE_CHANGED,
    TASK_RUNS_CREATED,
    FlowRun,
    TaskRun,
)


def new_flow_run(flow_name: str = "etl", tags=("nightly",), parameters=None) -> FlowRun:
    rid = uuid.uuid4()
    return FlowRun(rid, f"run-{rid.hex[:6]}", flow_name, parameters or {"n": 3}, frozenset(tags), S.Pending())


def change(run, state, events) -> None:
    run.state = state
    run.state_history.append(state)
    events.append((STATE_CHANGED, run, state))


def flow_with_tasks(n: int, flow_name: str = "etl", fail_every: int = 0):
    """The events of one flow run with `n` task runs (Pending -> Running -> Completed/Failed each)."""
    fr = new_flow_run(flow_name)
    ev: list = [(FLOW_RUN_CREATED, fr, None)]
    fr.start_ts = time.time()
    change(fr, S.Running(), ev)
    trs = [TaskRun(uuid.uuid4(), f"add-{i}", "add", "mod.add", fr.id, {"x": i}, frozenset({"t"}), S.Pending(),
                   dynamic_key=i) for i in range(n)]
    ev.append((TASK_RUNS_CREATED, None, trs))
    for i, tr in enumerate(trs):
        tr.start_ts = time.time()
        tr.run_count = 1
        change(tr, S.Running(), ev)
        tr.end_ts = time.time()
        if fail_every and i % fail_every == 0:
            change(tr, S.Failed(message=f"boom {i}"), ev)
        else:
            change(tr, S.Completed(data=i), ev)
        ev.append((RUN_FINISHED, tr, tr.state))
    ev.append((LOG, None, {"run_id": str(trs[0].id) if trs else str(fr.id), "run_kind": "task" if trs else "flow",
                           "name": "distributary.task_runs", "levelno": 20, "msg": "hello", "created": time.time()}))
    ev.append((LOG, None, {"run_id": str(fr.id), "run_kind": "flow", "name": "distributary.flow_runs",
                           "levelno": 40, "msg": "flow says", "created": time.time()}))
    fr.end_ts = time.time()
    change(fr, S.Completed(), ev)
    ev.append((RUN_FINISHED, fr, fr.state))
    return fr, trs, ev


def artifact_event(key, data, type="markdown", flow_run_id=None, created=None):
    now = created or time.time()
    return (ARTIFACT, None, {"id": str(uuid.uuid4()), "key": key, "type": type, "description": "d", "data": data,
                             "flow_run_id": flow_run_id, "task_run_id": None, "created": now, "updated": now})
