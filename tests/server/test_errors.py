"""Bad requests get clear answers: 404 for an unknown id, 422 naming the bad field, 413 for a body over the
limit, and a client of an unreachable server gets one line saying what to do."""
from __future__ import annotations

import uuid

import httpx
import pytest

UNKNOWN = str(uuid.uuid4())


@pytest.mark.parametrize("method,path", [
    ("GET", f"flows/{UNKNOWN}"), ("GET", "flows/name/no-such-flow"), ("GET", f"flow_runs/{UNKNOWN}"),
    ("DELETE", f"flow_runs/{UNKNOWN}"), ("GET", f"task_runs/{UNKNOWN}"), ("GET", f"artifacts/{UNKNOWN}"),
    ("DELETE", f"artifacts/{UNKNOWN}"), ("GET", "variables/name/nope"), ("DELETE", "variables/name/nope"),
    ("GET", f"flow_run_states/?flow_run_id={UNKNOWN}"),
])
def test_unknown_ids_are_404(module_server, method, path):
    with module_server.http() as http:
        r = http.request(method, path)
    assert r.status_code == 404
    assert "no " in r.json()["detail"]


def test_set_state_of_an_unknown_run_is_404(module_server):
    with module_server.http() as http:
        r = http.post(f"flow_runs/{UNKNOWN}/set_state", json={"state": {"type": "COMPLETED"}})
    assert r.status_code == 404


def _locs(r: httpx.Response) -> list[list]:
    return [d["loc"] for d in r.json()["detail"]]


@pytest.mark.parametrize("path,body,loc", [
    ("flow_runs/filter", {"flow_runs": {"nme": {"any_": ["x"]}}}, ["body", "flow_runs", "nme"]),
    ("flow_runs/filter", {"limit": -1}, ["body", "limit"]),
    ("flow_runs/filter", {"sort": "SIDEWAYS"}, ["body", "sort"]),
    ("task_runs/filter", {"task_runs": {"state": {"type": {"any_": "COMPLETED"}}}},
     ["body", "task_runs", "state", "type", "any_"]),
    ("artifacts/latest/filter", {"artifacts": {"key": {"exists_": "perhaps"}}}, ["body", "artifacts", "key",
                                                                                 "exists_"]),
    ("variables/", {"value": 1}, ["body", "name"]),
    ("ingest", {"task_runs": {"x": {"id": "x", "name": "n", "task_key": "k", "dynamic_key": "0",
                                    "owner; DROP TABLE task_run": 1}}},
     ["body", "task_runs", "0", "owner; DROP TABLE task_run"]),
    ("ingest", {"states": [{"run_id": "r", "type": "COMPLETED"}]}, ["body", "states", "0", "timestamp"]),
    ("ingest", {"spaceships": {}}, ["body", "spaceships"]),
])
def test_malformed_bodies_are_422_naming_the_field(module_server, path, body, loc):
    with module_server.http() as http:
        r = http.post(path, json=body)
    assert r.status_code == 422
    assert loc in _locs(r)


def test_an_ingested_row_the_database_refuses_is_422_with_its_reason(module_server):
    run = {"id": "r1", "name": "n", "flow_id": "f", "flow_name": "f", "created": 1.0, "run_count": 0}  # no total_run_time
    with module_server.http() as http:
        r = http.post("ingest", json={"flow_runs": {"r1": run}})
        assert r.status_code == 422 and "total_run_time" in r.text
        assert http.post("flow_runs/count", json={}).status_code == 200  # and the server goes on


def test_malformed_ids_in_paths_are_422(module_server):
    with module_server.http() as http:
        r = http.get("flow_runs/not-a-uuid")
    assert r.status_code == 422 and ["path", "flow_run_id"] in _locs(r)


def test_prefect_style_filters_with_nulls_and_and_operator_are_accepted(module_server):
    body = {"flows": None, "flow_runs": {"operator": "and_", "id": None, "name": {"any_": None, "like_": None},
                                         "state": {"operator": "and_", "type": {"any_": ["COMPLETED"]}}},
            "task_runs": None, "deployments": None, "work_pools": None, "sort": None, "limit": None, "offset": 0}
    with module_server.http() as http:
        r = http.post("flow_runs/filter", json=body)
    assert r.status_code == 200 and r.json() == []


def test_a_duplicate_variable_is_409(module_server):
    with module_server.http() as http:
        assert http.post("variables/", json={"name": "v", "value": 1}).status_code == 201
        r = http.post("variables/", json={"name": "v", "value": 2})
    assert r.status_code == 409 and "already exists" in r.json()["detail"]


def test_bodies_over_the_limit_are_413(start_server):
    srv = start_server(env={"DISTRIBUTARY_SERVER_API_MAX_BODY_BYTES": "2000"})
    big = {"name": "v", "value": "x" * 5000}
    with srv.http() as http:
        assert http.post("variables/", json=big).status_code == 413

        def chunks():  # no Content-Length: the limit holds on the streamed body too
            for _ in range(10):
                yield b" " * 500
            yield b"{}"

        r = http.post("ingest", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "DISTRIBUTARY_SERVER_API_MAX_BODY_BYTES" in r.json()["detail"]
        assert http.post("variables/", json={"name": "small", "value": 1}).status_code == 201


def test_cli_against_an_unreachable_server_says_so(server):
    server.stop()
    r = server.cli("flow-run", "ls")
    assert r.returncode == 1
    assert "cannot reach the distributary server" in r.stderr and "distributary server start" in r.stderr
    assert "Traceback" not in r.stderr
