"""`enforce_parameter_schema` (Prefect 3's deployment field, true by default): a run's parameters, the deployment's
defaults with the run's over them, must validate against the deployment's `parameter_openapi_schema`, or no run
is created and the error names the field; with it false anything goes. On the embedded run store (the REST 409 is
in tests/server/test_deployment_routes.py)."""
from __future__ import annotations

import json

import pytest

from distributary.deployments import run_deployment
from distributary.deployments.definition import load_flow
from distributary.errors import ParameterTypeError
from distributary.runstore import get_storage

FLOWS = '''
from distributary import flow

@flow
def etl(n: int, name: str = "x", ratio: float | None = None, opts: dict = {}):
    return n
'''


@pytest.fixture
def etl(run_home, tmp_path, monkeypatch):
    (tmp_path / "flows.py").write_text(FLOWS)
    monkeypatch.chdir(tmp_path)
    return load_flow("flows.py:etl")


def refused(name: str, parameters: dict, field: str) -> str:
    with pytest.raises(ParameterTypeError) as err:
        run_deployment(name, parameters=parameters, timeout=0)
    message = str(err.value)
    assert message.startswith(f"Error creating flow run: Validation failed for field {field!r}. Failure reason:")
    assert "enforce_parameter_schema=False" in message and name in message  # how to fix it, and where
    return message


def test_runs_whose_parameters_do_not_validate_are_refused(etl):
    dep = etl.to_deployment("nightly").apply()
    assert dep.enforce_parameter_schema is True  # Prefect 3's default
    assert "'abc' is not of type 'integer'" in refused("etl/nightly", {"n": "abc"}, "n")
    assert "is not of type 'object'" in refused("etl/nightly", {"n": 1, "opts": [1]}, "opts")
    assert "is not valid under any of the given schemas" in refused("etl/nightly", {"n": 1, "ratio": "high"}, "ratio")
    with pytest.raises(ParameterTypeError, match="Validation failed. Failure reason: 'n' is a required property"):
        run_deployment("etl/nightly", timeout=0)
    assert get_storage().read_flow_runs() == []  # nothing was created
    ok = run_deployment("etl/nightly", parameters={"n": 3, "ratio": None, "opts": {"a": [1]}}, timeout=0)
    assert ok.parameters == {"n": 3, "ratio": None, "opts": {"a": [1]}}
    with pytest.raises(TypeError):  # ParameterTypeError is a TypeError too
        get_storage().create_flow_run_from_deployment(dep.id, parameters={"n": 1.5})


def test_the_deployments_defaults_count_and_a_run_may_opt_out(etl):
    dep = etl.to_deployment("defaults", parameters={"n": 2}).apply()
    assert run_deployment("etl/defaults", timeout=0).parameters == {"n": 2}  # n from the deployment
    bad = etl.to_deployment("bad-default", parameters={"n": "two"}).apply()
    refused("etl/bad-default", {}, "n")
    run = get_storage().create_flow_run_from_deployment(bad.id, enforce_parameter_schema=False)  # Prefect's override
    assert run.parameters == {"n": "two"} and dep.id != bad.id


def test_with_enforcement_off_parameters_go_through(etl):
    etl.to_deployment("loose", enforce_parameter_schema=False).apply()
    stored = get_storage().read_deployment_by_name("etl/loose")
    assert stored.enforce_parameter_schema is False and stored.parameter_openapi_schema is not None
    assert run_deployment("etl/loose", parameters={"n": "abc", "extra": 1}, timeout=0).parameters == {
        "n": "abc", "extra": 1}
    get_storage().update_deployment(stored.id, enforce_parameter_schema=True)
    refused("etl/loose", {"n": "abc"}, "n")


def test_a_deployment_without_a_schema_checks_nothing(run_home):
    dep = get_storage().create_deployment(flow_name="work", name="bare", entrypoint="flows.py:work")
    assert dep.enforce_parameter_schema and dep.parameter_openapi_schema is None
    assert run_deployment("work/bare", parameters={"anything": "goes"}, timeout=0).parameters == {"anything": "goes"}


def test_the_cli_shows_the_field_and_deploy_keeps_the_setting(etl, tmp_path, capsys):
    from distributary.cli import main

    etl.to_deployment("nightly").apply()
    capsys.readouterr()
    assert main(["deployment", "inspect", "etl/nightly", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["enforce_parameter_schema"] is True
    assert main(["deployment", "run", "etl/nightly", "--param", "n=abc"]) == 1
    err = capsys.readouterr().err
    assert "Validation failed for field 'n'" in err and "'abc' is not of type 'integer'" in err
    assert main(["work-pool", "create", "local"]) == 0
    dep_id = etl.deploy("pooled", work_pool_name="local", enforce_parameter_schema=False)
    assert get_storage().read_deployment(dep_id).enforce_parameter_schema is False
    served = etl.to_deployment("served-loose", enforce_parameter_schema=False, work_pool_name="local",
                               work_queue_name="side")
    assert served.apply().work_queue_name == "side" and not served.enforce_parameter_schema
