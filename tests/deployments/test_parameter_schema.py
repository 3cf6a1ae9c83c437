"""A deployment keeps the OpenAPI schema of its flow's parameters (Prefect's `parameter_openapi_schema`), and
`distributary deployment run --param` casts with it."""
from __future__ import annotations

import datetime as dt
import json

import pydantic
import pytest

from distributary.deployments.definition import load_flow
from distributary.deployments.parameters import cast_parameters, parameter_schema
from distributary.errors import ConfigurationError
from distributary.runstore import get_storage

FLOWS = '''
from distributary import flow

@flow
def etl(n: int, name: str = "x", ratio: float | None = None, opts: dict = {}):
    return n
'''


class Point(pydantic.BaseModel):
    x: int


class Opaque:
    pass


def test_the_schema_has_prefects_shape():
    def fn(n: int, name: str = "x", when: dt.datetime | None = None, p: Point | None = None,
           thing: Opaque | None = None, *args: int, **kwargs: int) -> None: ...

    s = parameter_schema(fn)
    assert set(s) == {"title", "type", "properties", "required", "definitions"}
    assert s["title"] == "Parameters" and s["type"] == "object" and s["required"] == ["n"]
    assert list(s["properties"]) == ["n", "name", "when", "p", "thing"]  # *args and **kwargs left out
    assert s["properties"]["n"] == {"title": "n", "position": 0, "type": "integer"}
    assert s["properties"]["name"] == {"title": "name", "position": 1, "type": "string", "default": "x"}
    assert s["properties"]["p"]["anyOf"][0] == {"$ref": "#/definitions/Point"}
    assert s["definitions"]["Point"]["properties"]["x"]["type"] == "integer"
    assert s["properties"]["thing"] == {"title": "thing", "position": 4, "default": None}  # no JSON type: any
    assert parameter_schema(lambda: None)["properties"] == {}
    json.dumps(s)


def test_cast_parameters_follows_the_schema():
    s = parameter_schema(load_flow_fn())
    assert cast_parameters(["n=3", "name=007", "ratio=0.5", 'opts={"a": [1]}'], s) == {
        "n": 3, "name": "007", "ratio": 0.5, "opts": {"a": [1]}}
    assert cast_parameters(["ratio=null"], s) == {"ratio": None}
    with pytest.raises(ConfigurationError, match="no parameter.*nope.*its parameters are: n, name, opts, ratio"):
        cast_parameters(["nope=1"], s)
    assert cast_parameters(["nope=1", "word=hi"], None) == {"nope": 1, "word": "hi"}  # no schema: JSON or text


def load_flow_fn():
    def etl(n: int, name: str = "x", ratio: float | None = None, opts: dict = {}) -> int:  # noqa: B006
        return n
    return etl


def test_serve_registers_the_schema_and_the_cli_casts_with_it(run_home, tmp_path, monkeypatch, capsys):
    from distributary.cli import main

    (tmp_path / "flows.py").write_text(FLOWS)
    monkeypatch.chdir(tmp_path)
    flow = load_flow("flows.py:etl")
    dep = flow.to_deployment("nightly").apply()
    stored = get_storage().read_deployment(dep.id)
    assert stored.parameter_openapi_schema == parameter_schema(flow.fn)
    assert stored.parameter_openapi_schema["properties"]["n"]["type"] == "integer"
    capsys.readouterr()
    assert main(["deployment", "run", "etl/nightly", "--param", "n=3", "--param", "name=007", "-o", "json"]) == 0
    run = json.loads(capsys.readouterr().out)
    assert run["parameters"] == {"n": 3, "name": "007"}
    assert main(["deployment", "run", "etl/nightly", "--param", "m=3"]) == 2
    assert "its parameters are: n, name, opts, ratio" in capsys.readouterr().err
