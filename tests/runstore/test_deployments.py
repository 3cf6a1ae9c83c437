"""Deployments in the run store, on SQLite and PostgreSQL: create/update/read/delete, schedules, runs from a
deployment with idempotency keys, and the scheduler's exactly-once inserts (two processes racing, a schedule
edited while a scheduler loops)."""
from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from distributary.errors import ConfigurationError, ObjectNotFound
from distributary.schedules import Cron, Interval

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 1, 1, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def make(storage, **kw):
    args = dict(flow_name="etl", name="nightly", entrypoint="flows.py:etl", parameters={"x": 1}, tags=["a"])
    args.update(kw)
    return storage.create_deployment(**args)


def test_create_read_update_delete(storage):
    dep = make(storage, schedules=[Cron("0 2 * * *", timezone="America/New_York", parameters={"x": 2})],
               concurrency_limit=2, collision_strategy="CANCEL_NEW", description="d")
    assert dep.full_name == "etl/nightly" and dep.entrypoint == "flows.py:etl" and dep.parameters == {"x": 1}
    assert dep.concurrency_limit == 2 and dep.concurrency_options.collision_strategy == "CANCEL_NEW"
    [s] = dep.schedules
    assert s.schedule["cron"] == "0 2 * * *" and s.parameters == {"x": 2} and s.as_schedule().timezone == "America/New_York"
    assert storage.read_deployment_by_name("etl/nightly").id == dep.id
    assert storage.read_flow_by_name("etl").id == dep.flow_id
    again = make(storage, description="new", schedules=[Cron("0 2 * * *", timezone="America/New_York",
                                                              parameters={"x": 2})])
    assert again.id == dep.id and again.description == "new" and again.schedules[0].id == s.id  # kept
    assert storage.update_deployment(dep.id, paused=True).paused
    assert [d.full_name for d in storage.read_deployments()] == ["etl/nightly"]
    storage.delete_deployment(dep.id)
    with pytest.raises(ObjectNotFound, match="deployment ls"):
        storage.read_deployment_by_name("etl/nightly")
    with pytest.raises(ConfigurationError, match="flow-name/deployment-name"):
        storage.read_deployment_by_name("nightly")


def test_run_from_deployment_merges_parameters_and_is_idempotent(storage):
    dep = make(storage, job_variables={"env": {"A": "1"}})
    run = storage.create_flow_run_from_deployment(dep.id, parameters={"y": 2}, tags=["b"], idempotency_key="k1")
    assert run.deployment_id == dep.id and run.parameters == {"x": 1, "y": 2} and run.tags == ["a", "b"]
    assert run.state.type == "SCHEDULED" and run.state_name == "Scheduled" and not run.auto_scheduled
    assert run.job_variables == {"env": {"A": "1"}}
    same = storage.create_flow_run_from_deployment(dep.id, parameters={"y": 3}, idempotency_key="k1")
    assert same.id == run.id
    other = storage.create_flow_run_from_deployment(dep.id)
    assert other.id != run.id
    assert [s.name for s in storage.read_states(run.id)] == ["Scheduled"]


def test_claim_is_exactly_once_and_late_runs(storage):
    dep = make(storage)
    run = storage.create_flow_run_from_deployment(dep.id, scheduled_time=T0)
    assert storage.mark_late_runs(now=T0 + dt.timedelta(seconds=60)) == 1
    assert storage.read_flow_run(run.id).state_name == "Late"
    assert [r.id for r in storage.read_due_runs([dep.id])] == [run.id]
    assert storage.claim_flow_run(run.id) is True
    assert storage.claim_flow_run(run.id) is False
    assert storage.read_flow_run(run.id).state_type == "PENDING"
    assert [s.name for s in storage.read_states(run.id)] == ["Scheduled", "Late", "Pending"]


def test_scheduler_creates_runs_ahead_once(storage):
    dep = make(storage, schedules=[Interval(3600, anchor_date=T0, parameters={"x": 9})])
    assert storage.schedule_runs(dep.id, now=T0) == 3  # at least MIN_RUNS, and everything within an hour
    assert storage.schedule_runs(dep.id, now=T0) == 0
    runs = storage.read_flow_runs(limit=10)
    assert sorted(r.expected_start_time for r in runs) == [T0 + dt.timedelta(hours=i) for i in range(3)]
    assert all(r.auto_scheduled and r.parameters == {"x": 9} for r in runs)
    storage.update_deployment(dep.id, paused=True)  # pausing removes future runs and stops scheduling
    assert storage.read_flow_runs() == [] and storage.schedule_runs(dep.id, now=T0) == 0


def test_replacing_schedules_replaces_future_auto_runs(storage):
    dep = make(storage, schedules=[Interval(60, anchor_date=T0)])
    storage.schedule_runs(dep.id, now=T0, max_runs=10, min_runs=10)
    manual = storage.create_flow_run_from_deployment(dep.id)
    new = storage.set_deployment_schedules(dep.id, [Cron("0 * * * *")])
    assert {r.id for r in storage.read_flow_runs()} == {manual.id}  # manual runs are kept
    storage.schedule_runs(dep.id, now=T0, max_runs=5, min_runs=5)
    keys = [r.idempotency_key for r in storage.read_flow_runs() if r.auto_scheduled]
    assert len(keys) == 5 and all(f" {new.schedules[0].id} " in k for k in keys)


def test_editing_one_schedule_keeps_its_id_and_replaces_only_its_future_runs(storage):
    dep = make(storage, schedules=[Interval(60, anchor_date=T0), Cron("0 * * * *")])
    every_minute, hourly = dep.schedules
    storage.schedule_runs(dep.id, now=T0, max_runs=5, min_runs=5)
    hourly_runs = {r.id for r in storage.read_flow_runs() if f" {hourly.id} " in r.idempotency_key}
    changed = storage.update_deployment_schedule(dep.id, every_minute.id, schedule=Interval(120, anchor_date=T0))
    assert changed.id == every_minute.id and changed.as_schedule().interval == dt.timedelta(minutes=2)
    left = {r.id for r in storage.read_flow_runs()}
    assert left == hourly_runs  # the edited schedule's runs went; the other schedule's stayed
    storage.schedule_runs(dep.id, now=T0, max_runs=5, min_runs=5)
    new = [r.expected_start_time for r in storage.read_flow_runs() if f" {every_minute.id} " in r.idempotency_key]
    assert sorted(t.minute for t in new) == [0, 2, 4, 6, 8]
    off = storage.update_deployment_schedule(dep.id, every_minute.id, active=False)
    assert off.active is False and {r.id for r in storage.read_flow_runs()} == hourly_runs
    with pytest.raises(ObjectNotFound):
        storage.update_deployment_schedule(dep.id, dep.id, active=True)


def test_proposing_cancelling_cancels_as_prefect_does(storage):
    from distributary.states import Completed, State, StateType

    dep = make(storage)
    waiting = storage.create_flow_run_from_deployment(dep.id)
    got = storage.propose_flow_run_state(waiting.id, State(StateType.CANCELLING))
    assert (got.status, got.state.type.value) == ("REJECT", "CANCELLED")  # nothing to stop: Cancelled at once
    assert storage.propose_flow_run_state(waiting.id, State(StateType.CANCELLING)).status == "ABORT"  # finished: left alone
    running = storage.create_flow_run_from_deployment(dep.id)
    assert storage.claim_flow_run(running.id)
    got = storage.propose_flow_run_state(running.id, State(StateType.CANCELLING))
    assert (got.status, got.state.type.value) == ("ACCEPT", "CANCELLING")
    assert str(running.id) in storage.read_cancelling([running.id])  # what its runner looks for
    assert storage.propose_flow_run_state(running.id, Completed()).state.type.value == "COMPLETED"


RACER = textwrap.dedent("""
    import datetime as dt, os, sys, time
    from distributary.runstore.storage import SqlRunStorage
    url, dep_id, go, mode = sys.argv[1:5]
    st = SqlRunStorage(url=url)
    while not os.path.exists(go):
        time.sleep(0.005)
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    made = 0
    if mode == "race":
        for _ in range(5):
            made += st.schedule_runs(dep_id, now=t0, max_runs=200, min_runs=200)
    else:  # loop until told to stop
        while not os.path.exists(go + ".stop"):
            made += st.schedule_runs(dep_id, now=t0, max_runs=20, min_runs=20)
    print(made)
""")


def wait_for(cond, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def _racers(store_url, dep_id, tmp_path, n, mode):
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", RACER, store_url, str(dep_id), str(go), mode],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(n)]
    return go, procs


def _made(procs):
    out = []
    for p in procs:
        stdout, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        out.append(int(stdout.strip()))
    return out


def test_two_schedulers_racing_create_each_of_200_runs_once(storage, store_url, tmp_path):
    dep = make(storage, schedules=[Interval(60, anchor_date=T0)])
    go, procs = _racers(store_url, dep.id, tmp_path, 2, "race")
    time.sleep(1.0)  # both processes are up and waiting
    go.touch()
    made = _made(procs)
    runs = storage.read_flow_runs()
    assert sum(made) == 200 and len(runs) == 200
    assert len({r.expected_start_time for r in runs}) == 200


def test_a_schedule_edited_while_the_scheduler_loops_leaves_no_stale_runs(storage, store_url, tmp_path):
    dep = make(storage, schedules=[Interval(60, anchor_date=T0)])
    go, procs = _racers(store_url, dep.id, tmp_path, 1, "loop")
    go.touch()
    wait_for(lambda: storage.read_flow_runs(limit=1))  # the scheduler is looping
    current = dep
    for i in range(20):
        current = storage.set_deployment_schedules(dep.id, [Interval(60 + i + 1, anchor_date=T0)])
        time.sleep(0.02)
    [sched] = current.schedules
    wait_for(lambda: any(f" {sched.id} " in (r.idempotency_key or "") for r in storage.read_flow_runs()))
    (tmp_path / "go.stop").touch()
    _made(procs)
    runs = [r for r in storage.read_flow_runs() if r.auto_scheduled]
    assert all(f" {sched.id} " in r.idempotency_key for r in runs), "a run of a replaced schedule was left"
    step = sched.as_schedule().interval
    assert all((r.expected_start_time - T0) % step == dt.timedelta(0) for r in runs)
