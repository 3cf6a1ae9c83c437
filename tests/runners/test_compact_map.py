"""A `.map()` on Dask and Ray keeps its runs compact (runners/remote/fanout.py) where nothing watches each task run
one by one (the run store takes them in bulk, the recorder does not ask): what the user sees of them stays the same
as for an ordinary map, records and futures made only when asked for. The runner contract (test_contract.py) and
the mid-map kills (test_mid_map_kills.py) run on it too; here is what only a compact map has to get right. Most
tests run with the run store off (only the recorder listening); the last ones with it on."""
from __future__ import annotations

import sys
import time

import cloudpickle
import pytest

from distributary import flow, task
from distributary.engine.futures import FutureList
from distributary.futures import as_completed, wait
from distributary.runners.remote.fanout import FanoutFutureList
from distributary.runs import get_recorder

cloudpickle.register_pickle_by_value(sys.modules[__name__])


@task
def inc(x: int) -> int:
    return x + 1


@task
def fail_on_five(x: int) -> int:
    if x == 5:
        raise ValueError("five")
    return x


@task
def slow_inc(x: int) -> int:
    time.sleep(0.001)
    return x + 1


@task
def total(values: list[int]) -> int:
    return sum(values)


@pytest.fixture(params=["dask", "ray"])
def cluster_runner(request):
    """A runner on the session's Dask or Ray cluster, with the run store off for the test (the cluster started
    first: see `no_run_store`)."""
    runner = request.getfixturevalue(f"{request.param}_runner")
    request.getfixturevalue("no_run_store")
    return runner


def test_compact_map_gives_values_futures_states_and_records(cluster_runner):
    n = 3000

    @flow(task_runner=cluster_runner)
    def fan():
        futs = inc.map(range(n))
        values = futs.result()
        f7, last = futs[7], futs[-1]
        run = f7.task_run
        return (type(futs), len(futs), values, f7.result(), last.result(), [f.result() for f in futs[10:13]],
                [s.name for s in run.state_history], run.name, run.parameters, run.run_count,
                run.start_ts <= run.end_ts, run.worker, run.id, f7 is futs[7])

    (kind, length, values, v7, v_last, some, history, name, params, run_count, ordered, worker, run_id,
     same) = fan()
    assert kind is FanoutFutureList and length == n
    assert values == [x + 1 for x in range(n)]
    assert v7 == 8 and v_last == n and some == [11, 12, 13] and same
    assert history == ["Pending", "Running", "Completed"]
    assert name == "inc-7" and params == {"x": 7} and run_count == 1 and ordered and worker
    runs = get_recorder().flow_runs[-1].task_runs  # the flow run counts every run, records made on reading
    assert len(runs) == n and len({r.id for r in runs}) == n
    assert runs[7].id == run_id and all(r.state.is_completed() for r in runs)
    assert [r.name for r in runs[:3]] == ["inc-0", "inc-1", "inc-2"]


def test_a_failing_run_of_a_compact_map_fails_alone(cluster_runner):
    @flow(task_runner=cluster_runner)
    def fan():
        futs = fail_on_five.map(range(20))
        values = futs.result(raise_on_failure=False)
        five, four = futs[5].state, futs[4].state
        return values, five.is_failed(), five.message, four.is_completed()

    values, failed, message, completed = fan()
    assert [v for i, v in enumerate(values) if i != 5] == [x for x in range(20) if x != 5]
    assert isinstance(values[5], ValueError) and str(values[5]) == "five"
    assert failed and "five" in message and completed


def test_compact_maps_chain_reduce_and_wait(cluster_runner):
    @flow(task_runner=cluster_runner)
    def fan():
        first = slow_inc.map(range(200))
        second = inc.map(first)  # futures as arguments: an ordinary map, waiting on the compact one
        summed = total.submit(second)
        done, not_done = wait(first)
        seen = sorted(f.result() for f in as_completed(inc.map(range(50))))
        return summed.result(), len(done), len(not_done), seen, type(second)

    summed, done, not_done, seen, second_kind = fan()
    assert summed == sum(x + 2 for x in range(200))
    assert (done, not_done) == (200, 0) and seen == list(range(1, 51))
    assert second_kind is FutureList


def test_one_element_of_an_unfinished_compact_map_passed_on(cluster_runner):
    @flow(task_runner=cluster_runner)
    def fan():
        futs = slow_inc.map(range(400))
        return inc.submit(futs[123]).result(), inc.submit(futs[-1]).result()

    assert fan() == (125, 401)


def test_compact_map_values_outlive_the_flow_run(cluster_runner):
    kept = []

    @flow(task_runner=cluster_runner)
    def fan():
        kept.append(inc.map(range(100)))

    fan()  # the runner has shut down: the values still wanted were fetched first
    (futs,) = kept
    assert futs.result() == [x + 1 for x in range(100)]
    assert futs[99].result() == 100


@pytest.mark.parametrize("n", [30, 6000])  # 6,000: the run store's writer process writes the rows
def test_with_the_run_store_on_a_compact_map_records_every_run(ray_runner, run_home, n):
    """The run store takes a compact map's runs in bulk: every run gets its row (name, parameters-free columns,
    Pending -> Running -> Completed), and the one that failed its Failed state, with no record made on the
    driver for the others."""
    from distributary.client.orchestration import get_client

    @flow(task_runner=ray_runner)
    def fan():
        futs = fail_on_five.map(range(n))
        values = futs.result(raise_on_failure=False)
        return type(futs), values[:4], str(values[5]), str(futs[7].task_run.id)

    kind, head, five, seven_id = fan()
    assert kind is FanoutFutureList and head == [0, 1, 2, 3] and five == "five"
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(limit=n + 10)
        by_name = {r.name: r for r in runs}
        assert len(runs) == n and set(by_name) == {f"fail_on_five-{x}" for x in range(n)}
        assert by_name["fail_on_five-5"].state.type.value == "FAILED"
        assert sum(r.state.type.value == "COMPLETED" for r in runs) == n - 1
        seven = by_name["fail_on_five-7"]
        assert str(seven.id) == seven_id and seven.run_count == 1
        assert [s.type.value for s in client.read_task_run_states(seven.id)] == ["PENDING", "RUNNING", "COMPLETED"]
