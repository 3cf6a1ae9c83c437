"""`distributary.runtime` and the run-context classes, as Prefect 3 documents them."""
from __future__ import annotations

import datetime as dt
import uuid

import pytest

from distributary import flow, task
from distributary.context import FlowRunContext, TaskRunContext, get_run_context
from distributary.runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner
from distributary.runtime import deployment, flow_run, task_run


@task(tags=["etl"])
def who_am_i(x: int) -> dict:
    return {"task_run_id": task_run.id, "task_run_name": task_run.name, "task_name": task_run.task_name,
            "params": task_run.parameters, "tags": task_run.tags, "run_count": task_run.run_count,
            "flow_run_id": flow_run.id, "flow_params": flow_run.parameters}


@flow(name="runtime-flow")
def runtime_flow(n: int = 2) -> dict:
    out = who_am_i.submit(n).result()
    out["flow_name"] = flow_run.flow_name
    out["flow_run_name"] = flow_run.name
    out["flow_run_count"] = flow_run.run_count
    out["own_flow_run_id"] = flow_run.id
    out["ctx_flow_run_id"] = str(FlowRunContext.get().flow_run.id)
    return out


@pytest.mark.parametrize("runner", [ThreadPoolTaskRunner, ProcessPoolTaskRunner])
def test_runtime_inside_tasks_and_flows(runner):
    out = runtime_flow.with_options(task_runner=runner(max_workers=2))(n=3)
    assert out["task_name"] == "who_am_i"
    assert out["task_run_name"] == "who_am_i-0"
    assert uuid.UUID(out["task_run_id"])
    assert out["params"] == {"x": 3}
    assert out["tags"] == ["etl"]
    assert out["run_count"] == 1
    assert out["flow_run_id"] == out["own_flow_run_id"] == out["ctx_flow_run_id"]
    assert out["flow_params"] == {"n": 3}
    assert out["flow_name"] == "runtime-flow"
    assert out["flow_run_name"]
    assert out["flow_run_count"] == 1


def test_runtime_outside_runs_is_empty_and_never_raises():
    assert flow_run.id is None and flow_run.name is None and task_run.id is None
    assert flow_run.parameters == {} and task_run.tags == [] and task_run.run_count == 0
    assert isinstance(flow_run.scheduled_start_time, dt.datetime)
    assert deployment.id is None and deployment.parameters == {}
    assert FlowRunContext.get() is None and TaskRunContext.get() is None
    with pytest.raises(Exception, match="outside a flow or task run"):
        get_run_context()


def test_environment_overrides_cast_to_the_attribute_type(monkeypatch):
    monkeypatch.setenv("DISTRIBUTARY__RUNTIME__TASK_RUN__RUN_COUNT", "7")
    monkeypatch.setenv("DISTRIBUTARY__RUNTIME__FLOW_RUN__NAME", "mocked")
    monkeypatch.setenv("DISTRIBUTARY__RUNTIME__TASK_RUN__FAKE_KEY", "foo")
    assert task_run.run_count == 7
    assert flow_run.name == "mocked"
    assert task_run.fake_key == "foo"
    with pytest.raises(AttributeError, match="available"):
        _ = task_run.no_such_key


def test_task_run_context_get_inside_a_task():
    @task
    def ctx_name():
        return TaskRunContext.get().task_run.name, get_run_context().task_run.name

    @flow
    def f():
        return ctx_name()

    assert f() == ("ctx_name-0", "ctx_name-0")


@task(tags=["handoff"])
def hand_to_a_child(out: str, x: int) -> dict:
    import multiprocessing

    import context_child

    from distributary.context import serialize_context

    child = multiprocessing.get_context("spawn").Process(target=context_child.run_in_child,
                                                         args=(serialize_context(), out))
    child.start()
    child.join(120)
    return {"exitcode": child.exitcode, "task_run_id": str(task_run.id), "flow_run_id": str(flow_run.id),
            "task_run_name": task_run.name}


@flow(name="handoff-flow")
def handoff_flow(out: str) -> dict:
    return hand_to_a_child(out, 7)


def test_serialize_context_hands_the_run_to_a_child_process(run_home, tmp_path):
    """Prefect's `serialize_context()` / `hydrated_context()`: in a spawned child, the run's logger, runtime and
    tags are the parent task run's, and the child's log lines are recorded under that run."""
    import json

    from distributary.client.orchestration import get_client
    from distributary.context import serialize_context

    assert serialize_context()["flow_run_context"] == {}  # outside any run: empty parts, never an error
    out = tmp_path / "seen.json"
    parent = handoff_flow(str(out))
    assert parent["exitcode"] == 0
    seen = json.loads(out.read_text())
    assert seen == {"flow_run_id": parent["flow_run_id"], "flow_name": "handoff-flow",
                    "task_run_id": parent["task_run_id"], "task_run_name": parent["task_run_name"],
                    "tags": ["handoff"], "parameters": {"out": str(out), "x": 7}}
    logs = [lg for lg in get_client(sync_client=True).read_logs() if "hello from the child" in lg.message]
    assert [str(lg.task_run_id) for lg in logs] == [parent["task_run_id"]]
    assert [str(lg.flow_run_id) for lg in logs] == [parent["flow_run_id"]]
