"""`distributary.runtime` inside tasks on every runner, cluster workers included."""
from __future__ import annotations

import sys
import uuid

import cloudpickle

from distributary import flow, task
from distributary.runtime import flow_run, task_run

cloudpickle.register_pickle_by_value(sys.modules[__name__])


@task(tags=["etl"])
def who_am_i(x: int) -> dict:
    return {"task_run_id": task_run.id, "task_run_name": task_run.name, "task_name": task_run.task_name,
            "params": task_run.parameters, "tags": task_run.tags, "run_count": task_run.run_count,
            "flow_run_id": flow_run.id, "flow_params": flow_run.parameters}


def test_runtime_inside_tasks_on_every_runner(runner):
    @flow(task_runner=runner)
    def runtime_flow(n: int = 2) -> dict:
        futs = who_am_i.map([n, n])
        out = futs[1].result()
        out["own_flow_run_id"] = flow_run.id
        out["driver_task_run_id"] = str(futs[1].task_run.id)
        return out

    out = runtime_flow(n=3)
    assert uuid.UUID(out["task_run_id"]) and out["task_run_id"] == out["driver_task_run_id"]
    assert out["task_name"] == "who_am_i" and out["task_run_name"] == "who_am_i-1"
    assert out["params"] == {"x": 3} and out["tags"] == ["etl"] and out["run_count"] == 1
    assert out["flow_run_id"] == out["own_flow_run_id"]
    assert out["flow_params"] == {"n": 3}
