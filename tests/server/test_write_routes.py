"""Prefect's write routes, as a client that is not distributary would use them: create a flow, a flow run and a
task run, move them through states, write logs and artifacts, manage variables by id; everything reads back."""
from __future__ import annotations


def test_a_run_recorded_through_prefects_write_routes(module_server):
    with module_server.http() as http:
        flow = http.post("flows/", json={"name": "hand-made", "tags": []})
        assert flow.status_code == 201
        again = http.post("flows/", json={"name": "hand-made"}).json()
        assert again["id"] == flow.json()["id"]  # a flow is its name

        run = http.post("flow_runs/", json={"flow_id": again["id"], "parameters": {"x": 1}, "tags": ["manual"],
                                             "state": {"type": "PENDING"}}).json()
        assert run["state"]["type"] == "PENDING" and run["parameters"] == {"x": 1}
        assert http.post(f"flow_runs/{run['id']}/set_state",
                         json={"state": {"type": "RUNNING", "name": "Running"}}).json()["status"] == "ACCEPT"

        task = http.post("task_runs/", json={"flow_run_id": run["id"], "task_key": "mod.step", "dynamic_key": "0",
                                             "name": "step-0"}).json()
        for state in ("RUNNING", "COMPLETED"):
            got = http.post(f"task_runs/{task['id']}/set_state", json={"state": {"type": state}}).json()
            assert got["state"]["type"] == state
        read = http.get(f"task_runs/{task['id']}").json()
        assert read["state_type"] == "COMPLETED" and read["run_count"] == 1 and read["end_time"] is not None
        history = http.get("task_run_states/", params={"task_run_id": task["id"]}).json()
        assert [s["type"] for s in history] == ["PENDING", "RUNNING", "COMPLETED"]

        assert http.post("logs/", json=[{"name": "me", "level": 20, "message": "by hand", "flow_run_id": run["id"],
                                         "timestamp": "2026-01-01T00:00:00Z"}]).status_code == 201
        logs = http.post("logs/filter", json={"logs": {"flow_run_id": {"any_": [run["id"]]}}}).json()
        assert [lg["message"] for lg in logs] == ["by hand"]

        art = http.post("artifacts/", json={"key": "progress-1", "type": "progress", "data": 10.0,
                                            "flow_run_id": run["id"]}).json()
        assert http.patch(f"artifacts/{art['id']}", json={"data": 90.0}).status_code == 204
        assert http.get(f"artifacts/{art['id']}").json()["data"] == 90.0
        assert http.get("artifacts/progress-1/latest").json()["id"] == art["id"]

        http.post(f"flow_runs/{run['id']}/set_state", json={"state": {"type": "COMPLETED"}})
        states = http.get("flow_run_states/", params={"flow_run_id": run["id"]}).json()
        assert [s["type"] for s in states] == ["PENDING", "RUNNING", "COMPLETED"]
        assert http.delete(f"artifacts/{art['id']}").status_code == 204
        assert http.get(f"artifacts/{art['id']}").status_code == 404


def test_variables_by_id(module_server):
    with module_server.http() as http:
        var = http.post("variables/", json={"name": "by_id", "value": [1, 2], "tags": ["t"]}).json()
        assert http.get(f"variables/{var['id']}").json()["value"] == [1, 2]
        assert http.patch(f"variables/{var['id']}", json={"value": {"a": None}}).status_code == 204
        got = http.get("variables/name/by_id").json()
        assert got["value"] == {"a": None} and got["tags"] == ["t"]
        names = [v["name"] for v in http.post("variables/filter", json={"variables": {"name": {"like_": "by_"}}}).json()]
        assert names == ["by_id"]
        assert http.delete(f"variables/{var['id']}").status_code == 204
        assert http.get(f"variables/{var['id']}").status_code == 404
