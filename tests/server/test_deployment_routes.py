"""Deployments over the REST API: read them and create runs of them, as the seed's `curl .../create_flow_run`
does, against the real server; the run lands in the store that `serve()` processes and workers poll."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from distributary.runstore import get_storage


@pytest.fixture
def deployment(server):
    store = get_storage(f"sqlite:///{server.home / 'runs.db'}")
    dep = store.create_deployment(flow_name="my-flow", name="my-deployment", entrypoint="flows.py:my_flow",
                                  parameters={"key": "default", "other": 1}, tags=["etl"])
    return store, dep


def test_the_seeds_curl_creates_a_scheduled_run_of_the_deployment(server, deployment):
    store, dep = deployment
    curl = shutil.which("curl")
    assert curl, "curl is needed for the seed's example"
    out = subprocess.run(
        [curl, "--silent", "--fail-with-body", "--location", "--request", "POST",
         f"{server.api_url}/deployments/{dep.id}/create_flow_run", "--header", "Content-Type: application/json",
         "--data-raw", '{"parameters": {"key": "value"}}'],
        capture_output=True, text=True, timeout=30, check=True).stdout
    run = json.loads(out)
    assert run["deployment_id"] == str(dep.id)
    assert run["parameters"] == {"key": "value", "other": 1}  # merged over the deployment's defaults
    assert run["state"]["type"] == "SCHEDULED"
    stored = store.read_flow_run(run["id"])  # what serve() and workers poll
    assert stored.deployment_id == dep.id and stored.state.type.value == "SCHEDULED"


def test_deployments_are_read_by_filter_id_and_name(server, deployment):
    _, dep = deployment
    with server.http() as http:
        listed = http.post("deployments/filter", json={"limit": 10}).json()
        assert [d["name"] for d in listed] == ["my-deployment"]
        by_name = http.post("deployments/filter", json={"deployments": {"name": {"any_": ["nope"]}}}).json()
        assert by_name == []
        got = http.get(f"deployments/{dep.id}").json()
        assert got["entrypoint"] == "flows.py:my_flow" and got["tags"] == ["etl"]
        assert http.get("deployments/name/my-flow/my-deployment").json()["id"] == str(dep.id)


def test_an_idempotency_key_creates_one_run(server, deployment):
    _, dep = deployment
    with server.http() as http:
        first = http.post(f"deployments/{dep.id}/create_flow_run", json={"idempotency_key": "k1"}).json()
        again = http.post(f"deployments/{dep.id}/create_flow_run", json={"idempotency_key": "k1"}).json()
        assert first["id"] == again["id"]


def test_unknown_deployments_and_bad_bodies_are_clear_errors(server, deployment):
    _, dep = deployment
    with server.http() as http:
        missing = http.post("deployments/00000000-0000-0000-0000-000000000000/create_flow_run", json={})
        assert missing.status_code == 404
        bad = http.post(f"deployments/{dep.id}/create_flow_run", json={"paramters": {}})
        assert bad.status_code == 422 and "paramters" in bad.text
