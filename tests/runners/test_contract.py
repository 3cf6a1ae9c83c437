"""The runner contract: every task runner must pass these tests unchanged (one fixture per runner kind in
conftest.py). Task functions are pickled by value so worker processes need not import this module."""
from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time
from pathlib import Path

import cloudpickle
import pytest

from distributary import allow_failure, flow, task, unmapped
from distributary.errors import MappingLengthMismatch, MappingMissingIterable, UpstreamTaskError
from distributary.futures import as_completed, wait

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def bump(path: str) -> int:
    """Count a call in a file (works across threads, processes and cluster workers on this machine)."""
    with open(path, "a") as f:
        f.write("x")
    return os.path.getsize(path)


def count(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


@task
def add(x: int, y: int = 0) -> int:
    return x + y


@task
def where() -> int:
    return os.getpid()


@task
def boom(x: int) -> int:
    raise ValueError(f"boom {x}")


@task
def total(values) -> int:
    return sum(values)


@dataclasses.dataclass
class Box:
    a: int
    b: list


@task
def unbox(box: Box, d: dict) -> int:
    return box.a + sum(box.b) + sum(d.values())


@task
def sleepy(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"


@task
async def async_double(x: int) -> int:
    await asyncio.sleep(0.01)
    return 2 * x


@task
def fail_times(counter: str, failures: int) -> int:
    n = bump(counter)
    if n <= failures:
        raise RuntimeError(f"attempt {n} fails")
    return n


@task
def counted_square(counter: str, x: int) -> int:
    bump(counter)
    return x * x


@task
def takes_exception(value) -> str:
    return type(value).__name__


def test_submit_returns_future_with_result_and_state(runner):
    @flow(task_runner=runner)
    def f():
        fut = add.submit(1, 2)
        assert fut.task_run_id is not None
        value = fut.result()
        return value, fut.state

    value, state = f()
    assert value == 3
    assert state.is_completed() and state.result() == 3


def test_map_broadcasts_non_iterables_and_unmapped(runner):
    @flow(task_runner=runner)
    def f():
        sums = add.map([1, 2, 3], 10)
        totals = total.map([[1], [2, 3]])
        with_unmapped = unbox.map([Box(1, [1]), Box(2, [2])], unmapped({"k": 5}))
        return sums.result(), totals.result(), with_unmapped.result()

    assert f() == ([11, 12, 13], [1, 5], [7, 9])


def test_map_errors_are_clear(runner):
    @flow(task_runner=runner)
    def mismatch():
        add.map([1, 2, 3], [1, 2])

    with pytest.raises(MappingLengthMismatch, match=r"x has 3, y has 2"):
        mismatch()

    @flow(task_runner=runner)
    def nothing_to_map():
        add.map(1, 2)

    with pytest.raises(MappingMissingIterable, match="iterable"):
        nothing_to_map()


def test_futures_as_arguments_resolve_also_when_nested(runner):
    @flow(task_runner=runner)
    def f():
        a = add.submit(1, 1)
        b = add.submit(a, 1)
        c = unbox.submit(Box(a, [b, 1]), {"x": a, "y": b})
        s = total.submit([a, b, (a, b)][:2])
        return c.result(), s.result(), b.result()

    assert f() == (2 + 3 + 1 + 2 + 3, 5, 3)


def test_tasks_run_where_the_runner_says(runner):
    @flow(task_runner=runner)
    def f():
        return where.submit().result()

    pid = f()
    if type(runner).__name__ == "ThreadPoolTaskRunner":
        assert pid == os.getpid()
    else:
        assert pid != os.getpid()


def test_failure_raises_and_stops_downstream_unless_allowed(runner):
    @flow(task_runner=runner)
    def f():
        bad = boom.submit(1)
        down = add.submit(bad, 1)
        allowed = takes_exception.submit(allow_failure(bad))
        wait([bad, down, allowed])
        out.update(bad=bad, down=down, allowed=allowed)

    out = {}
    f()
    bad, down, allowed = out["bad"], out["down"], out["allowed"]
    assert bad.state.is_failed()
    with pytest.raises(ValueError, match="boom 1"):
        bad.result()
    assert not down.state.is_completed()
    with pytest.raises(UpstreamTaskError):
        down.result()
    assert allowed.result() == "ValueError"
    assert isinstance(bad.result(raise_on_failure=False), ValueError)


def test_flow_returning_a_failed_future_fails(runner):
    @flow(task_runner=runner)
    def f():
        return [add.submit(1), boom.submit(2)]

    state = f(return_state=True)
    assert state.is_failed()
    with pytest.raises(ValueError, match="boom 2"):
        state.result()


def test_retries_are_recorded_in_state_history(runner, tmp_path):
    counter = str(tmp_path / "c")

    @flow(task_runner=runner)
    def f():
        fut = fail_times.with_options(retries=2, retry_delay_seconds=0.05).submit(counter, 2)
        out.append(fut)
        return fut.result()

    out = []
    value = f()
    fut = out[0]
    assert value == 3
    names = [s.name for s in fut.task_run.state_history]
    assert names.count("AwaitingRetry") == 2 and "Retrying" in names and names[-1] == "Completed"
    assert fut.task_run.run_count == 3


def test_retry_condition_can_refuse(runner, tmp_path):
    counter = str(tmp_path / "c")
    never = fail_times.with_options(retries=3, retry_condition_fn=lambda t, r, s: False)

    @flow(task_runner=runner)
    def f():
        fut = never.submit(counter, 5)
        fut.wait()
        out.append(fut.state)

    out = []
    f()
    assert out[0].is_failed()
    assert count(Path(counter)) == 1


def test_timeout_fails_run_as_timed_out_and_flow_goes_on(runner):
    @flow(task_runner=runner)
    def f():
        slow = sleepy.with_options(timeout_seconds=0.5).submit(3)
        quick = add.submit(1, 1)
        t0 = time.monotonic()
        slow.wait()
        out.append(slow.state)
        return time.monotonic() - t0, quick.result()

    out = []
    waited, quick = f()
    state = out[0]
    assert state.is_failed() and state.name == "TimedOut"
    assert waited < 2.5
    assert quick == 2


def test_hooks_run_once_and_a_raising_hook_changes_nothing(runner, tmp_path):
    done, failed = str(tmp_path / "done"), str(tmp_path / "failed")

    def on_done(tsk, run, state):
        bump(done)

    def on_fail(tsk, run, state):
        bump(failed)

    def broken_hook(tsk, run, state):
        raise RuntimeError("hook bug")

    ok = add.with_options(on_completion=[on_done, broken_hook])
    bad = boom.with_options(on_failure=[on_fail, broken_hook])

    @flow(task_runner=runner)
    def f():
        a, b = ok.submit(1), bad.submit(1)
        wait([a, b])
        out.extend([a.state, b.state])

    out = []
    f()
    a_state, b_state = out
    assert a_state.is_completed() and b_state.is_failed()
    assert count(Path(done)) == 1 and count(Path(failed)) == 1


def test_async_tasks(runner):
    @flow(task_runner=runner)
    def f():
        return async_double.submit(21).result(), async_double.map([1, 2]).result()

    assert f() == (42, [2, 4])


def test_wait_and_as_completed(runner):
    @flow(task_runner=runner)
    def f():
        futs = add.map(range(5), 1)
        done, not_done = wait(futs)
        order = [fu.result() for fu in as_completed(add.map(range(3)))]
        return len(done), len(not_done), sorted(order)

    assert f() == (5, 0, [0, 1, 2])


def test_wait_times_out_on_slow_work(runner):
    @flow(task_runner=runner)
    def f():
        fut = sleepy.submit(1.5)
        done, not_done = wait([fut], timeout=0.2)
        with pytest.raises(TimeoutError):
            fut.result(timeout=0.1)
        return len(done), len(not_done), fut.result()

    assert f() == (0, 1, "woke")


def test_caching_across_flow_runs(runner, tmp_path):
    from distributary.cache_policies import INPUTS

    counter = str(tmp_path / "calls")
    cached = counted_square.with_options(cache_policy=INPUTS - "counter", result_storage=str(tmp_path / "store"))

    @flow(task_runner=runner)
    def f():
        futs = cached.map(unmapped(counter), [1, 2, 3])
        futs.wait()
        return futs.result(), [fu.state.name for fu in futs]

    first, names1 = f()
    second, names2 = f()
    assert first == second == [1, 4, 9]
    assert names1 == ["Completed"] * 3 and names2 == ["Cached"] * 3
    assert count(Path(counter)) == 3


def test_persisted_results_load_from_the_store(runner, tmp_path):
    store = str(tmp_path / "store")
    lean = add.with_options(persist_result=True, cache_result_in_memory=False, result_storage=store)

    @flow(task_runner=runner)
    def f():
        fut = lean.submit(20, 22)
        fut.wait()
        out.append(fut)

    out = []
    f()
    fut = out[0]
    assert fut.result() == 42
    assert fut.state.result_ref is not None
    assert any(Path(store).rglob("*"))


@task
def square(x: int) -> int:
    return x * x


@task
def total_of_dict(d: dict) -> int:
    return sum(sum(v) for v in d.values())


def test_map_then_reduce_in_every_form(runner):
    """A .map() result passed to a task arrives as values, not futures (Prefect 3's map-reduce pattern)."""
    from collections import OrderedDict, defaultdict

    @flow(task_runner=runner)
    def map_reduce() -> dict:
        squares = square.map(range(5))
        out = {"inline": total(squares), "submit": total.submit(squares).result()}
        again = square.map(squares)  # .map over a future list maps over the values
        out["map_over_futures"] = again.result()
        out["nested"] = total_of_dict({"a": squares, "b": [square.submit(2)]})
        od = OrderedDict(a=square.submit(3))
        dd = defaultdict(list, b=square.submit(4))
        out["subclasses"] = (add(od["a"], 0), unbox(Box(1, [square.submit(1)]), od), unbox(Box(0, []), dd))
        return out

    out = map_reduce()
    assert out["inline"] == out["submit"] == 30
    assert out["map_over_futures"] == [0, 1, 16, 81, 256]
    assert out["nested"] == 34
    assert out["subclasses"] == (9, 1 + 1 + 9, 16)
