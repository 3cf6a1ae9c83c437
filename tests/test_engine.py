"""Flows and tasks on the default runner: names, options, subflows, async, retries, timeouts, hooks, logging,
and clear errors for bad input."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time

import pytest

from distributary import flow, get_run_logger, tags, task, unmapped
from distributary.errors import ConfigurationError, ParameterTypeError, UnknownNameError
from distributary.runners.thread import ThreadPoolTaskRunner
from distributary.runs import get_recorder
from distributary.states import Completed, Failed


@task
def double(x: int) -> int:
    return 2 * x


def test_default_names_and_unique_run_names():
    @flow
    def my_flow_name():
        return [double.submit(i) for i in range(3)]

    assert my_flow_name.name == "my-flow-name"
    assert double.name == "double"
    s1 = my_flow_name(return_state=True)
    s2 = my_flow_name(return_state=True)
    runs = list(get_recorder().flow_runs)[-2:]
    assert runs[0].name != runs[1].name
    assert len({tr.name for tr in runs[0].task_runs}) == 3
    # As in Prefect 3, returned futures become their final states (the flow's data and its call's value).
    assert [s.result() for s in s1.result()] == [s.result() for s in s2.result()] == [0, 2, 4]


def test_run_records_have_ids_times_parameters_tags_and_history():
    @flow
    def recorded(n: int):
        with tags("etl"):
            return double.submit(n).result()

    state = recorded(4, return_state=True)
    run = get_recorder().flow_runs[-1]
    assert run.parameters == {"n": 4} and run.state is state
    assert [s.type.value for s in run.state_history] == ["PENDING", "RUNNING", "COMPLETED"]
    (tr,) = run.task_runs
    assert tr.parameters == {"x": 4} and "etl" in tr.tags and tr.flow_run_id == run.id
    assert tr.start_time <= tr.end_time
    assert [s.name for s in tr.state_history] == ["Pending", "Running", "Completed"]
    assert all(a.timestamp <= b.timestamp for a, b in zip(tr.state_history, tr.state_history[1:]))


def test_task_run_name_template_and_callable():
    named = double.with_options(task_run_name="double-{x}")
    called = double.with_options(task_run_name=lambda: "custom")

    @flow
    def f():
        return named.submit(7).task_run.name, called.submit(1).task_run.name

    assert f() == ("double-7", "custom")


def test_with_options_copies():
    quick = double.with_options(name="quick", retries=2, tags=["a"])
    assert (quick.name, quick.retries, quick.tags) == ("quick", 2, frozenset({"a"}))
    assert (double.name, double.retries) == ("double", 0)

    @flow
    def base():
        return 1

    other = base.with_options(name="other", task_runner="processes")
    assert other.name == "other" and base.name == "base" and other() == 1


def test_parameters_validated_and_coerced_from_type_hints():
    @flow
    def typed(n: int, names: list[str], ratio: float = 0.5):
        return n, names, ratio

    assert typed("3", ("a", "b")) == (3, ["a", "b"], 0.5)
    with pytest.raises(ParameterTypeError, match="parameter 'n'"):
        typed("three", [])

    @flow(validate_parameters=False)
    def untyped(n: int):
        return n

    assert untyped("three") == "three"


def test_subflows_are_linked_to_their_parent():
    @flow
    def child(x: int):
        return double(x)

    @flow
    def parent():
        return child(1) + child(2)

    assert parent() == 6
    runs = list(get_recorder().flow_runs)[-3:]
    parent_run = runs[-3]
    assert parent_run.flow_name == "parent"
    assert [r.parent_flow_run_id for r in runs[-2:]] == [parent_run.id, parent_run.id]


def test_async_flows_and_tasks_mix_with_sync_ones():
    @task
    async def slow_add(x: int, y: int) -> int:
        await asyncio.sleep(0.01)
        return x + y

    @flow
    async def async_flow():
        a = await slow_add(1, 2)
        b = double(a)  # a sync task inside an async flow
        c = slow_add.submit(b, 1).result()
        return a, b, c

    @flow
    def sync_flow():
        return slow_add(2, 3)  # an async task inside a sync flow

    assert asyncio.run(async_flow()) == (3, 6, 7)
    assert sync_flow() == 5


def test_tasks_outside_flows():
    assert double(2) == 4
    assert double.submit(3).result() == 6
    assert double.map([1, 2]).result() == [2, 4]
    assert double(5, return_state=True).is_completed()


def test_nested_submission_never_deadlocks_a_one_thread_pool():
    @task
    def fan(n: int) -> int:
        return sum(double.map(range(n)).result()) + double.submit(n).result()

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    def nested():
        return [f.result() for f in fan.map([3, 4, 5])]

    result = []
    t = threading.Thread(target=lambda: result.append(nested()), daemon=True)
    t.start()
    t.join(20)
    assert not t.is_alive(), "nested submission deadlocked"
    assert result == [[6 + 6, 12 + 8, 20 + 10]]


def test_flow_returning_states_decides_its_state():
    @flow
    def ok():
        return Completed(message="fine", data={"x": 1})

    @flow
    def bad():
        return Failed(message="nope: bad input")

    assert ok() == {"x": 1}
    state = bad(return_state=True)
    assert state.is_failed() and state.message == "nope: bad input"
    with pytest.raises(Exception, match="nope: bad input"):
        bad()


def test_flow_retries_and_hooks(tmp_path):
    attempts, seen = [], []

    def remember(name):
        return lambda fl, run, state: seen.append((name, state.name))

    @flow(retries=2, retry_delay_seconds=0, on_running=[remember("running")],
          on_completion=[remember("completed")], on_failure=[remember("failed")])
    def flaky():
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("not yet")
        return "ok"

    assert flaky() == "ok"
    assert len(attempts) == 3
    assert seen == [("running", "Running"), ("completed", "Completed")]
    run = get_recorder().flow_runs[-1]
    assert [s.name for s in run.state_history].count("AwaitingRetry") == 2

    @flow(on_failure=[remember("failed")], on_crashed=[remember("crashed")])
    def broken():
        raise KeyError("x")

    with pytest.raises(KeyError):
        broken()
    assert seen[-1] == ("failed", "Failed")


def test_flow_timeout_ends_timed_out():
    @flow(timeout_seconds=0.3)
    def slow():
        time.sleep(5)

    t0 = time.monotonic()
    state = slow(return_state=True)
    assert state.is_failed() and state.name == "TimedOut"
    assert time.monotonic() - t0 < 2


def test_task_timeout_in_a_thread_runner_and_in_the_flow_thread():
    @task(timeout_seconds=0.2)
    def stuck():
        time.sleep(3)

    @flow
    def f():
        direct = stuck(return_state=True)  # runs in the flow's thread (SIGALRM in the main thread)
        submitted = stuck.submit()
        submitted.wait()
        return direct.name, submitted.state.name

    t0 = time.monotonic()
    assert f() == ("TimedOut", "TimedOut")
    assert time.monotonic() - t0 < 2.5


def test_exponential_backoff_and_jitter_delays_are_honoured():
    calls = []

    @task(retries=2, retry_delay_seconds=[0.2, 0.4], retry_jitter_factor=0.5)
    def flaky():
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise RuntimeError("again")
        return len(calls)

    assert flaky() == 3
    gaps = [b - a for a, b in zip(calls, calls[1:])]
    assert 0.2 <= gaps[0] < 0.2 * 1.5 + 0.15
    assert 0.4 <= gaps[1] < 0.4 * 1.5 + 0.15


def test_run_logger_and_log_prints(capfd, monkeypatch):
    @task(log_prints=True)
    def chatty():
        get_run_logger().warning("from the logger")
        print("from print")

    @flow
    def f():
        get_run_logger().info("flow says hi")
        chatty()
        print("flow print stays a print")

    f()
    out, err = capfd.readouterr()
    assert "| WARNING | chatty-0 - from the logger" in err
    assert "| INFO    | chatty-0 - from print" in err
    assert "flow says hi" in err
    assert "flow print stays a print" in out


def test_logging_level_from_environment():
    code = ("from distributary import flow, task\n@task\ndef t(): return 1\n@flow\ndef f(): return t()\nf()\n")
    env = {**os.environ, "DISTRIBUTARY_LOGGING_LEVEL": "WARNING"}
    quiet = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    env["DISTRIBUTARY_LOGGING_LEVEL"] = "DEBUG"
    loud = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert "Beginning flow run" not in quiet.stderr
    assert "Beginning flow run" in loud.stderr
    assert "| DEBUG   | t-0 - Task run 't-0' finished in state Completed()" in loud.stderr


@pytest.mark.parametrize("kwargs, match", [
    ({"retries": -1}, "retries must be a whole number >= 0"),
    ({"retries": 1.5}, "retries must be"),
    ({"on_failure": ["not callable"]}, "hooks must be callables"),
    ({"timeout_seconds": 0}, "timeout_seconds must be a number > 0"),
    ({"retry_delay_seconds": -3}, "retry_delay_seconds must be >= 0"),
    ({"cache_expiration": 60}, "timedelta"),
])
def test_bad_task_options_are_rejected(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        task(**kwargs)(lambda: None)


def test_bad_flow_options_are_rejected():
    with pytest.raises(UnknownNameError, match="valid names are: dask, processes, ray, threads"):
        flow(task_runner="spark")(lambda: None)
    with pytest.raises(ConfigurationError, match="on_completion hooks must be callables"):
        flow(on_completion=[42])(lambda: None)
    with pytest.raises(ConfigurationError, match="retries"):
        flow(retries=-2)(lambda: None)


def test_bad_call_arguments_name_the_task():
    with pytest.raises(TypeError, match="Task 'double'"):
        double(1, 2, 3)


def test_unpicklable_argument_on_process_runner_names_task_and_type():
    from distributary.runners.process import ProcessPoolTaskRunner

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
    def f():
        fut = double.submit(threading.Lock())
        fut.wait()
        return fut.state

    out = []
    f.fn.__globals__  # noqa: B018 - the flow itself runs in this process
    state = f.with_options(validate_parameters=False)(return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match=r"Task 'double'.*argument 'x' \(a value of type lock\)"):
        state.result()
    assert out == []


def test_import_is_light():
    code = ("import sys, distributary\n"
            "heavy = [m for m in ('dask', 'distributed', 'ray', 'pyarrow', 's3fs', 'gcsfs', 'adlfs', 'pandas',"
            " 'pydantic') if m in sys.modules]\nprint(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert out.strip() == "[]"


def test_map_over_many_items_with_unmapped_and_empty_iterables():
    @task
    def scale(x: int, factors: list[int]) -> int:
        return x * sum(factors)

    @flow
    def f(n: int):
        return scale.map(range(n), unmapped([1, 2])).result(), scale.map([], unmapped([1])).result()

    values, empty = f(1000)
    assert values == [3 * i for i in range(1000)] and empty == []


def test_task_log_prints_false_overrides_the_flows_true(capsys, caplog):
    @task(log_prints=False)
    def quiet():
        print("plain print from the task")

    @task
    def inherits():
        print("logged print from the task")

    @flow(log_prints=True)
    def loud():
        quiet()
        inherits.submit().result()
        quiet.submit().result()

    with caplog.at_level("INFO", logger="distributary"):
        import logging
        logging.getLogger("distributary").addHandler(caplog.handler)
        try:
            loud()
        finally:
            logging.getLogger("distributary").removeHandler(caplog.handler)
    out = capsys.readouterr().out
    assert out.count("plain print from the task") == 2
    assert "logged print from the task" not in out
    assert any("logged print from the task" in r.getMessage() for r in caplog.records)
    assert not any("plain print" in r.getMessage() for r in caplog.records)


def test_an_unknown_task_runner_setting_ends_the_run_failed_not_running(monkeypatch):
    """Issue 15 item 12: DISTRIBUTARY_TASK_RUNNER set to an unknown name."""
    from distributary.errors import UnknownNameError

    monkeypatch.setenv("DISTRIBUTARY_TASK_RUNNER", "threadz")

    @flow
    def f():
        return 1

    state = f(return_state=True)
    assert state.is_failed() and "threadz" in state.message
    run = list(get_recorder().flow_runs)[-1]
    assert run.state.is_failed() and run.end_ts is not None
    with pytest.raises(UnknownNameError, match="threadz"):
        f()
