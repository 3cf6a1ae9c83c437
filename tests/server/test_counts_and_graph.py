"""Prefect's `POST /flows/count`, `POST /flow_runs/count` and `GET /flow_runs/{id}/graph`, and the flow-run page
of `POST /flow_runs/filter` (rendered straight from the database rows) against the record of each run, on the real
server over SQLite and PostgreSQL."""
from __future__ import annotations

import uuid

FLOWS = """
from distributary import flow, task, tags

@task
def double(x):
    return 2 * x

@flow(name="counted-a")
def a(n: int = 3):
    return [double(i) for i in range(n)]

@flow(name="counted-b")
def b():
    raise ValueError("b fails")

with tags("nightly"):
    a(n=2)
a(n=3)
try:
    b()
except ValueError:
    pass
"""


def test_counts_match_what_was_recorded(any_server):
    any_server.run_flow(FLOWS)
    with any_server.http() as http:
        assert http.post("flows/count", json={}).json() == 2
        assert http.post("flows/count", json={"flows": {"name": {"any_": ["counted-a"]}}}).json() == 1
        assert http.post("flows/count", json={"flow_runs": {"state": {"type": {"any_": ["FAILED"]}}}}).json() == 1
        assert http.post("flow_runs/count").json() == 3
        assert http.post("flow_runs/count", json={"flows": {"name": {"any_": ["counted-a"]}}}).json() == 2
        assert http.post("flow_runs/count", json={"flow_runs": {"state": {"type": {"any_": ["FAILED"]}}}}).json() == 1
        assert http.post("flow_runs/count", json={"flow_runs": {"tags": {"all_": ["nightly"]}}}).json() == 1
        # Prefect's client sends every field, unset ones as null
        assert http.post("flow_runs/count", json={"flows": None, "flow_runs": None, "task_runs": None}).json() == 3
        bad = http.post("flow_runs/count", json={"flow_runz": {}})
        assert bad.status_code == 422 and "flow_runz" in bad.text

        # the filter's pages are the same JSON as each run read alone (the model path)
        page = http.post("flow_runs/filter", json={"sort": "START_TIME_DESC"}).json()
        assert len(page) == 3
        for run in page:
            assert run == http.get(f"flow_runs/{run['id']}").json()
        tagged = http.post("flow_runs/filter", json={"flow_runs": {"tags": {"all_": ["nightly"]}}}).json()
        assert [r["tags"] for r in tagged] == [["nightly"]] and tagged[0]["parameters"] == {"n": 2}


def test_the_graph_lists_task_runs_with_their_upstream_task_runs(module_server):
    with module_server.http() as http:
        flow = http.post("flows/", json={"name": "graphed"}).json()
        run = http.post("flow_runs/", json={"flow_id": flow["id"], "state": {"type": "RUNNING"}}).json()
        first = http.post("task_runs/", json={"flow_run_id": run["id"], "task_key": "m.load", "dynamic_key": "0",
                                              "name": "load-0", "task_inputs": {}}).json()
        second = http.post("task_runs/", json={
            "flow_run_id": run["id"], "task_key": "m.use", "dynamic_key": "0", "name": "use-0",
            "task_inputs": {"x": [{"input_type": "task_run", "id": first["id"]}],
                            "y": [{"input_type": "task_run", "id": first["id"]},
                                  {"input_type": "parameter", "name": "n"}]}}).json()
        http.post(f"task_runs/{first['id']}/set_state", json={"state": {"type": "COMPLETED"}})

        graph = http.get(f"flow_runs/{run['id']}/graph").json()
        by_name = {node["name"]: node for node in graph}
        assert set(by_name) == {"load-0", "use-0"}
        assert by_name["use-0"]["upstream_dependencies"] == [{"input_type": "task_run", "id": first["id"]}]
        assert by_name["load-0"]["upstream_dependencies"] == []
        assert by_name["load-0"]["state"]["type"] == "COMPLETED" and by_name["use-0"]["state"]["type"] == "PENDING"
        assert by_name["use-0"]["id"] == second["id"]
        assert set(by_name["load-0"]) == {"id", "name", "upstream_dependencies", "state", "expected_start_time",
                                          "start_time", "end_time", "total_run_time", "estimated_run_time",
                                          "untrackable_result"}
        assert http.get(f"flow_runs/{uuid.uuid4()}/graph").status_code == 404


def test_the_graph_of_a_distributary_flow_run(module_server):
    module_server.run_flow(FLOWS.replace("counted-", "graph-"))
    with module_server.http() as http:
        run = http.post("flow_runs/filter", json={"flows": {"name": {"any_": ["graph-a"]}},
                                                  "flow_runs": {"tags": {"all_": ["nightly"]}}}).json()[0]
        graph = http.get(f"flow_runs/{run['id']}/graph").json()
        assert sorted(node["name"] for node in graph) == ["double-0", "double-1"]
        assert all(node["state"]["type"] == "COMPLETED" for node in graph)
