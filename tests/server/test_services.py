"""The server's services, in real server processes: the scheduler creates every deployment's runs ahead of time,
exactly once with two servers (and an embedded scheduler) on one PostgreSQL database; the late-runs service marks
runs that missed their start Late and Crashes the runs of a worker whose heartbeats stopped."""
from __future__ import annotations

import datetime as dt
import threading
from collections import Counter

from procs import wait_for

from distributary.runstore.api_storage import ApiRunStorage
from distributary.runstore.db import get_engine
from distributary.runstore.storage import SqlRunStorage
from distributary.schedules import Interval

FAST = {"DISTRIBUTARY_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "0.2",
        "DISTRIBUTARY_SERVER_SERVICES_LATE_RUNS_LOOP_SECONDS": "0.2", "DISTRIBUTARY_WORKER_HEARTBEAT_TIMEOUT": "2"}


def test_the_server_schedules_deployments_nobody_serves(start_server):
    srv = start_server(env=FAST)
    api = ApiRunStorage(srv.api_url)
    dep = api.create_deployment(flow_name="etl", name="every-minute", entrypoint="f.py:etl",
                                schedules=[Interval(60)])
    runs = wait_for(lambda: api.read_due_runs([dep.id], before=dt.datetime.now(dt.timezone.utc)
                                              + dt.timedelta(hours=2)), 30, "the scheduler's runs")
    assert len(runs) >= 3 and all(r.auto_scheduled for r in runs)
    api.update_deployment(dep.id, paused=True)
    assert api.read_due_runs([dep.id], before=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)) == []


def test_two_servers_and_an_embedded_scheduler_make_each_run_once(start_server, api_pg_server):
    url = api_pg_server.create_database("services_race")
    env = {**FAST, "DISTRIBUTARY_API_DATABASE_CONNECTION_URL": url}
    first, second = start_server(env=env), start_server(env=env)
    db = SqlRunStorage(get_engine(url))
    deps = [ApiRunStorage(first.api_url).create_deployment(
        flow_name="race", name=f"d{i}", entrypoint="f.py:f", schedules=[Interval(30 + i)]) for i in range(5)]
    stop = threading.Event()

    def embedded() -> None:  # a serve() process's scheduler on the same database, racing the servers
        while not stop.is_set():
            db.schedule_many([d.id for d in deps])

    racer = threading.Thread(target=embedded)
    racer.start()
    try:
        wait_for(lambda: all(len(db.read_due_runs([d.id], before=dt.datetime.now(dt.timezone.utc)
                                                  + dt.timedelta(hours=2))) >= 100 for d in deps), 60,
                 "every deployment's runs for the next hour")
        # a schedule changed while three schedulers loop: no run of the old one is left
        ApiRunStorage(second.api_url).set_deployment_schedules(deps[0].id, [Interval(3600)])
        wait_for(lambda: db.read_due_runs([deps[0].id], before=dt.datetime.now(dt.timezone.utc)
                                          + dt.timedelta(hours=3)), 30, "runs of the new schedule")
    finally:
        stop.set()
        racer.join(30)
    horizon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=200)
    for d in deps:
        runs = db.read_due_runs([d.id], before=horizon)
        times = Counter(r.expected_start_time for r in runs)
        assert times and max(times.values()) == 1, f"{d.name}: duplicated scheduled runs"
    left = sorted(r.expected_start_time for r in db.read_due_runs([deps[0].id], before=horizon))
    assert {(b - a).total_seconds() for a, b in zip(left, left[1:])} == {3600.0}, "runs of the old schedule left"


def test_late_runs_and_silent_workers(start_server):
    srv = start_server(env=FAST)
    api = ApiRunStorage(srv.api_url)
    api.create_work_pool("pool")
    dep = api.create_deployment(flow_name="etl", name="pooled", entrypoint="f.py:etl", work_pool_name="pool")
    missed = api.create_flow_run_from_deployment(
        dep.id, scheduled_time=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5))
    wait_for(lambda: api.read_flow_run(missed.id).state_name == "Late", 30, "the missed run to be Late")
    # a worker claims the run, then goes silent (as one killed with SIGKILL does)
    taken = api.claim_pool_runs("pool", "doomed", 1)[0]
    assert taken.id == missed.id and taken.state_type.value == "PENDING"
    final = wait_for(lambda: (r := api.read_flow_run(taken.id)).state_type.value == "CRASHED" and r, 30,
                     "the silent worker's run to be Crashed")
    assert "heartbeats" in final.state.message
