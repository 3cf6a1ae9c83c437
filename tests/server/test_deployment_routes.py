"""Deployments over the REST API: read them and create runs of them, as the seed's `curl .../create_flow_run`
does, against the real server; the run lands in the store that `serve()` processes and workers poll."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from distributary.deployments.parameters import parameter_schema
from distributary.runstore import get_storage


@pytest.fixture
def deployment(server):
    store = get_storage(f"sqlite:///{server.home / 'runs.db'}")
    dep = store.create_deployment(flow_name="my-flow", name="my-deployment", entrypoint="flows.py:my_flow",
                                  parameters={"key": "default", "other": 1}, tags=["etl"],
                                  parameter_openapi_schema=parameter_schema(my_flow))
    return store, dep


def my_flow(key: str, other: int = 1) -> None: ...


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
        by_name = http.get("deployments/name/my-flow/my-deployment").json()
        assert by_name["id"] == str(dep.id)
        schema = {"title": "Parameters", "type": "object", "required": ["key"], "definitions": {}, "properties": {
            "key": {"title": "key", "position": 0, "type": "string"},
            "other": {"title": "other", "position": 1, "type": "integer", "default": 1}}}
        assert got["parameter_openapi_schema"] == by_name["parameter_openapi_schema"] == schema
        assert listed[0]["parameter_openapi_schema"] == schema


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


def test_a_deployments_concurrency_limit_is_returned_as_prefects_global_concurrency_limit(server, deployment):
    from distributary.states import Running

    store, dep = deployment
    limited = store.create_deployment(flow_name="my-flow", name="limited", concurrency_limit=2)
    run = store.create_flow_run_from_deployment(limited.id)
    store.set_flow_run_state(run.id, Running())
    store.create_flow_run_from_deployment(limited.id)  # Scheduled: holds no slot
    with server.http() as http:
        assert http.get(f"deployments/{dep.id}").json()["global_concurrency_limit"] is None
        got = http.get("deployments/name/my-flow/limited").json()["global_concurrency_limit"]
        assert {k: got[k] for k in ("name", "limit", "active_slots", "active")} == {
            "name": f"deployment:{limited.id}", "limit": 2, "active_slots": 1, "active": True}
        listed = {d["name"]: d["global_concurrency_limit"] for d in http.post("deployments/filter", json={}).json()}
        assert listed == {"my-deployment": None, "limited": got}


def test_automations_related_to_a_resource_are_none(server, deployment):
    _, dep = deployment
    with server.http() as http:
        related = http.get(f"automations/related-to/prefect.deployment.{dep.id}")
        assert related.status_code == 200 and related.json() == []
        assert http.delete(f"automations/owned-by/prefect.deployment.{dep.id}").status_code == 202


def test_parameters_the_schema_refuses_are_a_409_naming_the_field(server, deployment, api):
    from distributary.errors import ParameterTypeError

    store, dep = deployment
    url = f"deployments/{dep.id}/create_flow_run"
    with server.http() as http:
        assert http.get(f"deployments/{dep.id}").json()["enforce_parameter_schema"] is True
        bad = http.post(url, json={"parameters": {"other": "many"}})
        assert bad.status_code == 409
        assert bad.json()["detail"].startswith(
            "Error creating flow run: Validation failed for field 'other'. Failure reason: 'many' is not of type "
            "'integer'")
        assert store.read_flow_runs() == []
        # a run may opt out (Prefect's DeploymentFlowRunCreate.enforce_parameter_schema)
        assert http.post(url, json={"parameters": {"other": "many"}, "enforce_parameter_schema": False}
                         ).status_code == 201
        assert http.patch(f"deployments/{dep.id}", json={"enforce_parameter_schema": False}).status_code == 204
        assert http.get(f"deployments/{dep.id}").json()["enforce_parameter_schema"] is False
        assert http.post(url, json={"parameters": {"other": "lots"}}).status_code == 201
        made = http.post("deployments/", json={"name": "loose", "flow_name": "my-flow",
                                               "parameter_openapi_schema": parameter_schema(my_flow),
                                               "enforce_parameter_schema": False}).json()
        assert made["enforce_parameter_schema"] is False
        strict = http.post("deployments/", json={"name": "strict", "flow_name": "my-flow",
                                                 "parameter_openapi_schema": parameter_schema(my_flow)}).json()
        assert strict["enforce_parameter_schema"] is True  # unset: true, as in Prefect 3
    with pytest.raises(ParameterTypeError, match="Validation failed for field 'key'"):  # the HTTP client
        api.create_flow_run_from_deployment(strict["id"], parameters={"key": 5})
    assert api.create_flow_run_from_deployment(strict["id"], parameters={"key": "5"}).parameters == {"key": "5"}
    runs = store.read_flow_runs()
    assert sorted(str(r.parameters["other"]) for r in runs if r.deployment_id == dep.id) == ["lots", "many"]
    assert [r.parameters for r in runs if str(r.deployment_id) == strict["id"]] == [{"key": "5"}]
