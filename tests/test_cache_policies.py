"""Cache policies with simple duck-typed task contexts (no engine involved)."""
from __future__ import annotations

import threading
import uuid
from types import SimpleNamespace
from typing import Any

import pytest

from distributary.cache_policies import (
    DEFAULT,
    FLOW_PARAMETERS,
    INPUTS,
    NO_CACHE,
    RUN_ID,
    TASK_SOURCE,
    CacheKeyFnPolicy,
    CachePolicy,
    CompoundCachePolicy,
    Inputs,
    NoCache,
)
from distributary.errors import CacheKeyError, ConfigurationError

FLOW_RUN = uuid.UUID(int=1)


def add(x: int, y: int = 0) -> int:
    return x + y


def add_v2(x: int, y: int = 0) -> int:
    return y + x


def ctx(fn: Any = add, task_key: str = "tests.add", flow_run_id: Any = FLOW_RUN,
        task_run_id: Any = uuid.UUID(int=2)) -> SimpleNamespace:  # noqa: B008  an immutable constant
    return SimpleNamespace(task=SimpleNamespace(fn=fn, name=fn.__name__, task_key=task_key),
                           task_run=SimpleNamespace(id=task_run_id, flow_run_id=flow_run_id), parameters={})


def key(policy: CachePolicy, inputs: dict[str, Any] | None = None, flow_parameters: dict[str, Any] | None = None,
        **ctx_kw: Any) -> str | None:
    return policy.compute_key(ctx(**ctx_kw), inputs if inputs is not None else {"x": 1, "y": 2},
                              flow_parameters or {})


def test_inputs() -> None:
    assert key(INPUTS) == key(INPUTS, {"y": 2, "x": 1}) != key(INPUTS, {"x": 1, "y": 3})
    assert key(INPUTS, {}) is None  # as in Prefect: no inputs, no inputs key


def test_equal_inputs_of_different_tasks_never_share_a_key() -> None:
    for policy in (INPUTS, TASK_SOURCE, RUN_ID, DEFAULT, INPUTS + TASK_SOURCE):
        assert key(policy, task_key="tests.add") != key(policy, task_key="tests.other"), policy
    assert key(FLOW_PARAMETERS, flow_parameters={"p": 1}, task_key="a") != key(
        FLOW_PARAMETERS, flow_parameters={"p": 1}, task_key="b")


def test_excluding_an_input() -> None:
    policy = INPUTS - "y"
    assert isinstance(policy, Inputs) and policy.exclude == ["y"]
    assert key(policy, {"x": 1, "y": 2}) == key(policy, {"x": 1, "y": 99}) != key(policy, {"x": 2, "y": 2})
    default_minus = DEFAULT - "y"
    assert key(default_minus, {"x": 1, "y": 2}) == key(default_minus, {"x": 1, "y": 3})
    assert key(DEFAULT, {"x": 1, "y": 2}) != key(DEFAULT, {"x": 1, "y": 3})
    assert TASK_SOURCE - "y" is TASK_SOURCE  # no inputs in it: nothing to exclude
    with pytest.raises(TypeError):
        INPUTS - 3  # type: ignore[operator]


def test_unhashable_input_error_names_the_argument() -> None:
    with pytest.raises(CacheKeyError, match="'lock'.*INPUTS - 'lock'"):
        key(INPUTS, {"x": 1, "lock": threading.Lock()})
    assert key(INPUTS - "lock", {"x": 1, "lock": threading.Lock()}) == key(INPUTS - "lock", {"x": 1})


def test_task_source_changes_with_the_code() -> None:
    assert key(TASK_SOURCE) == key(TASK_SOURCE) != key(TASK_SOURCE, fn=add_v2)
    lambda_fn = eval("lambda x: x + 1")  # no source file: falls back to the code object
    assert key(TASK_SOURCE, fn=lambda_fn) == key(TASK_SOURCE, fn=lambda_fn)
    assert key(TASK_SOURCE, fn=lambda_fn) != key(TASK_SOURCE, fn=eval("lambda x: x + 2"))


def test_flow_parameters_and_run_id() -> None:
    assert key(FLOW_PARAMETERS, flow_parameters={}) is None
    assert key(FLOW_PARAMETERS, flow_parameters={"a": 1}) != key(FLOW_PARAMETERS, flow_parameters={"a": 2})
    assert key(RUN_ID) == key(RUN_ID, task_run_id=uuid.UUID(int=3))  # the flow run decides
    assert key(RUN_ID) != key(RUN_ID, flow_run_id=uuid.UUID(int=9))
    assert key(RUN_ID, flow_run_id=None) != key(RUN_ID, flow_run_id=None, task_run_id=uuid.UUID(int=3))


def test_default_is_inputs_task_source_run_id() -> None:
    assert isinstance(DEFAULT, CompoundCachePolicy)
    assert key(DEFAULT) == key(INPUTS + TASK_SOURCE + RUN_ID)
    assert key(DEFAULT) != key(DEFAULT, flow_run_id=uuid.UUID(int=7))
    assert key(DEFAULT) != key(DEFAULT, fn=add_v2)


def test_compound_flattens_and_merges_inputs() -> None:
    policy = (INPUTS - "x") + TASK_SOURCE + (INPUTS - "y")
    inputs = [p for p in policy.policies if isinstance(p, Inputs)]
    assert len(inputs) == 1 and inputs[0].exclude == ["x", "y"]
    assert key(INPUTS + TASK_SOURCE, {}) is not None  # TASK_SOURCE still gives a key when there are no inputs
    assert key(INPUTS + FLOW_PARAMETERS, {}) is None  # every part None -> no key


def test_no_cache_absorbs_everything() -> None:
    assert key(NO_CACHE) is None
    for combined in (NO_CACHE + INPUTS, INPUTS + NO_CACHE, DEFAULT + NO_CACHE, NO_CACHE - "x"):
        assert isinstance(combined, NoCache) and key(combined) is None


def test_cache_key_fn_key_is_used_as_given() -> None:
    policy = CachePolicy.from_cache_key_fn(lambda context, params: f"custom-{params['x']}")
    assert isinstance(policy, CacheKeyFnPolicy)
    assert key(policy) == "custom-1"
    assert key(CacheKeyFnPolicy(lambda c, p: None)) is None
    with pytest.raises(CacheKeyError, match="must return a str"):
        key(CacheKeyFnPolicy(lambda c, p: 42))


def test_subclassing() -> None:
    class ByX(CachePolicy):
        def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                        **kwargs: Any) -> str | None:
            return f"x={inputs['x']}"

    assert key(ByX()) == "x=1"
    assert key(ByX() + INPUTS) != key(ByX() + INPUTS, {"x": 1, "y": 5})


def test_configure_and_conflicting_settings() -> None:
    configured = INPUTS.configure(key_storage="memory://keys", isolation_level="SERIALIZABLE")
    assert configured.key_storage == "memory://keys" and INPUTS.key_storage is None
    combined = configured + TASK_SOURCE
    assert combined.key_storage == "memory://keys" and combined.isolation_level == "SERIALIZABLE"
    with pytest.raises(ConfigurationError, match="key_storage"):
        configured + TASK_SOURCE.configure(key_storage="memory://other")
