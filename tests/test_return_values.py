"""What calling a task or flow returns, and the state its run ends in (Prefect 3's rules)."""
from __future__ import annotations

import pytest

from distributary import flow, task
from distributary.states import Completed, Failed, State


@task
def returns_failed():
    return Failed(message="told to fail")


@task
def plain(x):
    return x


def test_a_task_returning_a_failed_state_returns_it_and_its_run_fails():
    @flow
    def f():
        got = returns_failed()
        state = returns_failed(return_state=True)
        return got, state

    got, state = f()
    assert isinstance(got, State) and got.is_failed() and got.message == "told to fail"
    assert state.is_failed() and state.message == "told to fail"


def test_a_task_returning_a_list_of_states_returns_the_list():
    @task
    def two_states():
        return [Failed(message="x"), Completed(data=1)]

    @flow
    def f():
        return two_states(), two_states(return_state=True)

    got, state = f()
    assert [s.type.value for s in got] == ["FAILED", "COMPLETED"]
    assert state.is_failed() and state.message == "1/2 states failed."


def test_a_flow_returning_task_states_returns_the_list_and_fails():
    @flow
    def f():
        return [plain(1, return_state=True), returns_failed(return_state=True)]

    got = f()
    assert isinstance(got, list) and got[0].is_completed() and got[1].is_failed()
    state = f(return_state=True)
    assert state.is_failed() and state.message == "1/2 states failed."
    assert state.result(raise_on_failure=False)[1].message == "told to fail"
    with pytest.raises(Exception, match="told to fail"):
        state.result()


def test_a_flow_returning_a_mix_of_values_and_states_completes():
    @flow
    def f():
        return ("bar", returns_failed(return_state=True))

    state = f(return_state=True)
    assert state.is_completed()
    value = f()
    assert value[0] == "bar" and value[1].is_failed()


def test_a_flow_returning_a_map_returns_its_states():
    @flow
    def f():
        return plain.map([1, 2, 3])

    got = f()
    assert [s.result() for s in got] == [1, 2, 3]
    assert f(return_state=True).message == "All states completed."


def test_a_flow_returning_completed_with_data_returns_the_data_and_failed_raises():
    @flow
    def ok():
        return Completed(message="fine", data={"x": 1})

    @flow
    def bad():
        return Failed(message="Validation failed")

    assert ok() == {"x": 1}
    with pytest.raises(Exception, match="Validation failed"):
        bad()
    assert bad(return_state=True).is_failed()


def test_a_raising_task_raises_at_its_call():
    @task
    def boom():
        raise KeyError("k")

    @flow
    def f():
        with pytest.raises(KeyError):
            boom()
        return "after"

    assert f() == "after"
