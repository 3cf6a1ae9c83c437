"""End to end: flows record themselves in the run store (the engine's run events through the sink), readable the
moment the top-level flow returns, from this process or any other."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

from distributary import flow, get_run_logger, task
from distributary.client.orchestration import get_client
from distributary.client.schemas.filters import FlowRunFilter, TaskRunFilter, TaskRunFilterFlowRunId
from distributary.task_runners import ThreadPoolTaskRunner


@task
def double(x: int) -> int:
    return 2 * x


@task(retries=1, retry_delay_seconds=0)
def flaky(calls: list) -> str:
    calls.append(1)
    if len(calls) == 1:
        raise ValueError("first try fails")
    get_run_logger().info("second try works")
    return "ok"


def test_map_is_readable_with_full_histories_when_the_flow_returns(store_env):
    @flow(task_runner=ThreadPoolTaskRunner(max_workers=4))
    def fan(n: int):
        get_run_logger().info("fanning out")
        return sum(double.map(range(n)).result())

    state = fan(2000, return_state=True)
    assert state.result() == 2 * sum(range(2000))
    client = get_client(sync_client=True)
    (run,) = client.read_flow_runs()
    assert run.state_type == "COMPLETED" and run.parameters == {"n": 2000}
    assert client.read_flow(run.flow_id).name == "fan"
    flt = TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[run.id]))
    assert client.storage.count_task_runs(flt) == 2000
    one = client.read_task_runs(task_run_filter=flt, limit=1)[0]
    assert [s.type for s in client.read_task_run_states(one.id)] == ["PENDING", "RUNNING", "COMPLETED"]
    assert [s.type for s in client.read_flow_run_states(run.id)][-1] == "COMPLETED"
    assert "fanning out" in [rec.message for rec in client.read_logs()]


def test_retries_and_subflows_are_recorded(store_env):
    @flow
    def child():
        return flaky([])

    @flow
    def parent():
        return child()

    assert parent() == "ok"
    client = get_client(sync_client=True)
    runs = {r.name: r for r in client.read_flow_runs()}
    assert len(runs) == 2
    sub = [r for r in runs.values() if r.parent_flow_run_id is not None][0]
    top = [r for r in runs.values() if r.parent_flow_run_id is None][0]
    assert sub.parent_flow_run_id == top.id
    (tr,) = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [sub.id]}))
    types = [s.type for s in client.read_task_run_states(tr.id)]
    assert types[0] == "PENDING" and types[-1] == "COMPLETED" and "FAILED" not in types[-1:]
    assert tr.run_count == 2 and "second try works" in [rec.message for rec in client.read_logs()]


def test_cache_hits_are_recorded_with_where_their_result_lives(store_env, tmp_path):
    from distributary.cache_policies import INPUTS

    results = tmp_path / "results"
    cached = double.with_options(cache_policy=INPUTS, result_storage=str(results))

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def fan(n: int):
        return cached.map(range(n)).result()

    assert fan(3) == [0, 2, 4]  # fills the cache
    assert fan(3) == [0, 2, 4]  # every run a cache hit
    client = get_client(sync_client=True)
    second = max(client.read_flow_runs(), key=lambda r: r.start_time)
    hits = client.read_task_runs(task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[second.id])))
    assert len(hits) == 3
    for run in hits:
        states = client.read_task_run_states(run.id)
        assert [(s.type, s.name) for s in states] == [("PENDING", "Pending"), ("COMPLETED", "Cached")]
        ref = {"store_url": f"file://{results}", "key": run.cache_key, "storage_options": {}}
        assert states[-1].result_ref == ref and run.state.result_ref == ref


def test_recording_off_records_nothing(run_home, monkeypatch):
    monkeypatch.setenv("DISTRIBUTARY_RUNSTORE_ENABLED", "false")

    @flow
    def quiet():
        return double(1)

    assert quiet() == 2
    assert not (run_home / "runs.db").exists()


def test_a_locked_database_does_not_hold_up_the_flow_and_loses_nothing(run_home, monkeypatch):
    monkeypatch.setenv("DISTRIBUTARY_RUNSTORE_BUSY_TIMEOUT", "0.2")

    @flow
    def small():
        return sum(double.map(range(50)).result())

    small()  # creates the database
    blocker = sqlite3.connect(run_home / "runs.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    t0 = time.monotonic()
    assert small() == 2 * sum(range(50))
    assert time.monotonic() - t0 < 10
    blocker.execute("ROLLBACK")
    blocker.close()
    from distributary.engine import transitions

    assert transitions.flush(30)
    assert get_client(sync_client=True).storage.count_task_runs() == 100


def test_another_process_reads_the_runs(run_home):
    @flow
    def seen():
        return double(21)

    assert seen() == 42
    code = ("from distributary.client.orchestration import get_client; "
            "print([r.state_type.value for r in get_client(sync_client=True).read_flow_runs()])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path),
                              "DISTRIBUTARY_HOME": str(run_home)})
    assert out.stdout.strip() == "['COMPLETED']", out.stderr


def test_unreachable_postgres_the_flow_runs_and_says_its_runs_were_not_recorded(run_home, monkeypatch, capfd):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("DISTRIBUTARY_API_DATABASE_CONNECTION_URL", f"postgresql://postgres@127.0.0.1:{port}/x")

    @flow
    def unrecorded():
        return double(4)

    t0 = time.monotonic()
    assert unrecorded() == 8
    assert time.monotonic() - t0 < 15
    messages = capfd.readouterr().err
    assert "cannot be written" in messages and f"127.0.0.1:{port}" in messages
    assert "not yet written" in messages


@task
def load() -> list:
    return [1, 2, 3]


@task
def total(xs: list, extra: int = 0) -> int:
    return sum(xs) + extra


@task
def one() -> int:
    return 1


def test_task_inputs_name_the_upstream_task_runs(store_env):
    """A direct call given another's result (`b(a())`), a future, `wait_for`, each recorded as Prefect's
    task_inputs; a value Python interns (a small int) is not taken for an upstream result."""
    @flow
    def deps():
        xs = load()
        first = total(xs)
        fut = load.submit()
        second = total.submit(fut, extra=first, wait_for=[fut])
        small = one()
        return total([small], extra=second.result())

    assert deps() == 13
    client = get_client(sync_client=True)
    runs = {r.name: r for r in client.read_task_runs()}
    ref = lambda name: {"input_type": "task_run", "id": str(runs[name].id)}  # noqa: E731
    assert runs["load-0"].task_inputs == {} and runs["load-1"].task_inputs == {}
    assert runs["total-0"].task_inputs == {"xs": [ref("load-0")]}
    assert runs["total-1"].task_inputs == {"xs": [ref("load-1")], "wait_for": [ref("load-1")]}
    # `extra` was total-0's result (6: interned, so not linked), then total-1's future's result, a plain value
    assert runs["total-2"].task_inputs == {}
