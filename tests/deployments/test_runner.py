"""The serve() runner in this process (a thread): deployment concurrency limits with both collision strategies,
several schedules with their own parameters, paused deployments, and to_deployment's checks."""
from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from procs import wait_for
from served import FLOWS

from distributary.client.schemas.objects import ConcurrencyLimitConfig
from distributary.deployments.definition import load_flow
from distributary.deployments.runner import ACTIVE, Runner
from distributary.errors import ConfigurationError
from distributary.runstore import get_storage
from distributary.schedules import Cron, Interval


@pytest.fixture
def work(run_home, tmp_path, monkeypatch):
    (tmp_path / "flows.py").write_text(FLOWS.replace("time.sleep(120)", "time.sleep(0.5)"))
    monkeypatch.setenv("MARKS", str(tmp_path))
    return load_flow("flows.py:work", str(tmp_path))


@pytest.fixture
def running():
    runners = []

    def start(*deployments, **kw):
        runner = Runner(query_seconds=0.1, **kw)
        for d in deployments:
            runner.add_deployment(d)
        t = threading.Thread(target=runner.start, daemon=True)
        t.start()
        runners.append((runner, t))
        return runner

    yield start
    for runner, t in runners:
        runner.stop()
        t.join(60)


def test_twenty_runs_against_a_limit_of_three(work, running):
    st = get_storage()
    dep = work.to_deployment("limited", concurrency_limit=3).apply()
    runs = [st.create_flow_run_from_deployment(dep.id, parameters={"mode": "sleep"}) for _ in range(20)]
    running(work.to_deployment("limited", concurrency_limit=3))
    most = 0
    deadline = time.monotonic() + 300
    while True:
        most = max(most, st.count_deployment_runs(dep.id, ACTIVE))
        if st.count_deployment_runs(dep.id, ["COMPLETED"]) == 20:
            break
        assert time.monotonic() < deadline, "the 20 runs did not finish"
        time.sleep(0.05)
    assert 1 <= most <= 3
    assert {st.read_flow_run(r.id).state_type for r in runs} == {"COMPLETED"}


def test_cancel_new_cancels_runs_over_the_limit(work, running):
    st = get_storage()
    limit = ConcurrencyLimitConfig(limit=1, collision_strategy="CANCEL_NEW")
    dep = work.to_deployment("one-at-a-time", concurrency_limit=limit).apply()
    runs = [st.create_flow_run_from_deployment(dep.id, parameters={"mode": "sleep"}) for _ in range(3)]
    running(work.to_deployment("one-at-a-time", concurrency_limit=limit))
    wait_for(lambda: all(st.read_flow_run(r.id).state.is_final() for r in runs), what="3 final runs")
    states = sorted(st.read_flow_run(r.id).state_type for r in runs)
    assert states == ["CANCELLED", "CANCELLED", "COMPLETED"]


def test_several_schedules_each_with_their_parameters(work):
    d = work.to_deployment("two", schedules=[Interval(3600, parameters={"x": 1}),
                                             Cron("30 * * * *", parameters={"x": 2})], parameters={"mode": "ok"})
    dep = d.apply()
    st = get_storage()
    st.schedule_runs(dep.id, now=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), max_runs=2, min_runs=2)
    got = sorted((r.expected_start_time.minute, r.parameters["x"], r.parameters["mode"]) for r in st.read_flow_runs())
    assert got == [(0, 1, "ok"), (0, 1, "ok"), (30, 2, "ok"), (30, 2, "ok")]


def test_paused_deployment_gets_no_scheduled_runs_until_resumed(work):
    st = get_storage()
    dep = work.to_deployment("quiet", interval=60, paused=True).apply()
    assert dep.paused and st.schedule_runs(dep.id) == 0
    st.update_deployment(dep.id, paused=False)
    assert st.schedule_runs(dep.id) >= 3


@pytest.mark.parametrize("kwargs, words", [
    ({"cron": "0 * * * *", "schedules": [Interval(5)]}, "not both"), ({"cron": "bad"}, "invalid cron"),
    ({"concurrency_limit": 0}, "at least 1"), ({"schedules": ["0 * * * *"]}, "Cron/Interval/RRule"),
    ({"timezone": "Nowhere/Here", "cron": "0 * * * *"}, "time zone")])
def test_to_deployment_rejects_bad_input(work, kwargs, words):
    with pytest.raises(ConfigurationError, match=words):
        work.to_deployment("bad", **kwargs)


def test_a_flow_not_defined_in_a_file_cannot_be_served(run_home):
    from distributary import flow

    exec_globals: dict = {"flow": flow}
    exec("@flow\ndef inline():\n    return 1\n", exec_globals)
    with pytest.raises(ConfigurationError, match="not defined in a file|not a module-level name"):
        exec_globals["inline"].to_deployment("x")
