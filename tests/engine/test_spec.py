"""The engine reads a task's and a flow's options from their frozen specs, never from the objects' private
attributes."""
from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import cloudpickle
import pytest

from distributary import flow, task
from distributary.engine.spec import FlowSpec, TaskSpec

PKG = Path(__file__).resolve().parents[2] / "distributary"


@task(retries=2, retry_delay_seconds=[0.5, 1.0], tags=["a"], timeout_seconds=5)
def add(x: int, y: int = 1) -> int:
    return x + y


@flow(retries=1, retry_delay_seconds=0)
def adding(n: int) -> int:
    return add(n)


def test_task_spec_holds_the_options_and_is_frozen():
    spec = add.spec
    assert isinstance(spec, TaskSpec) and spec.owner is add
    assert (spec.name, spec.retries, spec.retry_delays, spec.tags, spec.timeout_seconds) == (
        "add", 2, (0.5, 1.0), frozenset({"a"}), 5.0)
    assert spec.invoke(x=1, y=2) == 3
    assert add.spec is spec  # built once
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.retries = 3  # type: ignore[misc]


def test_spec_pickles_as_its_task():
    spec = cloudpickle.loads(cloudpickle.dumps(add.spec))  # as the remote runners ship it
    assert isinstance(spec, TaskSpec)
    assert (spec.name, spec.task_key, spec.retries, spec.retry_delays) == (
        "add", add.task_key, 2, (0.5, 1.0))
    assert spec.owner.spec is spec


def test_changing_a_task_rebuilds_its_spec():
    t = add.with_options(name="add2")
    before = t.spec
    assert before.name == "add2" and before.retries == 2 and add.spec.name == "add"

    @t.on_commit
    def committed(txn):
        pass

    assert t.spec is not before and t.spec.on_commit == (committed,)
    t.retries = 0
    assert t.spec.retries == 0


def test_flow_spec_and_runs_read_it():
    spec = adding.spec
    assert isinstance(spec, FlowSpec) and spec.owner is adding
    assert (spec.name, spec.retries, spec.retry_delays) == ("adding", 1, (0.0,))
    assert adding(2) == 3


def test_flow_spec_names_the_parameters_a_flow_does_not_take():
    @flow
    def takes_kwargs(n: int, **rest: int) -> int:
        return n

    assert adding.spec.unknown_parameters({"n": 1, "source": "x", "b": 2}) == ["b", "source"]
    assert adding.spec.unknown_parameters(["n"]) == []
    assert takes_kwargs.spec.unknown_parameters({"n": 1, "source": "x"}) == []  # **kwargs takes any name


def test_hooks_added_after_definition_run():
    seen = []
    t = add.with_options(retries=0)
    t.on_completion_hook(lambda tk, run, state: seen.append((tk, state.type.value)))
    assert t(1) == 2
    assert seen == [(t, "COMPLETED")]


def _private_reads(path: Path) -> list[str]:
    """`task._x` / `flow._x` / `<...>.task._x` / `<...>.flow._x` attribute reads in one module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load) and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            continue
        v = node.value
        name = v.id if isinstance(v, ast.Name) else v.attr if isinstance(v, ast.Attribute) else None
        if name in ("task", "flow", "owner"):
            found.append(f"{path.relative_to(PKG.parent)}:{node.lineno} {name}.{node.attr}")
    return found


def test_engine_runners_and_deployments_read_no_private_task_or_flow_attributes():
    found = [hit for part in ("engine", "runners", "deployments") for p in sorted((PKG / part).rglob("*.py"))
             for hit in _private_reads(p)]
    assert found == []


def test_flow_and_task_retries_follow_one_loop():
    """A flow run and a task run that fail twice go through the same states, in the same order."""
    from distributary.runs import get_recorder

    calls = {"flow": 0, "task": 0}

    @task(retries=2, retry_delay_seconds=0)
    def flaky_task() -> str:
        calls["task"] += 1
        if calls["task"] < 3:
            raise RuntimeError("not yet")
        return "ok"

    @flow(retries=2, retry_delay_seconds=0)
    def flaky_flow() -> str:
        calls["flow"] += 1
        if calls["flow"] < 3:
            raise RuntimeError("not yet")
        return flaky_task()

    assert flaky_flow() == "ok"
    recorder = get_recorder()
    flow_states = [s.name for s in recorder.flow_runs[-1].state_history]
    task_states = [s.name for s in recorder.flow_runs[-1].task_runs[-1].state_history]
    expected = ["Pending", "Running", "AwaitingRetry", "Retrying", "AwaitingRetry", "Retrying", "Completed"]
    assert task_states == expected
    assert flow_states == expected
