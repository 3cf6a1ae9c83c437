"""Deployments and work pools registered and run through the REST API of a real server: the routes on Prefect's
paths (upsert, PATCH, schedules, pause, delete; work pools), and `flow.serve()`, `distributary deploy`,
`distributary worker start` and `run_deployment` in client processes that only know DISTRIBUTARY_API_URL."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap

import pytest
from procs import stop_all, wait_for

from distributary.deployments import run_deployment
from distributary.errors import ConfigurationError, ObjectNotFound
from distributary.runstore.api_storage import ApiRunStorage
from distributary.schedules import Cron, Interval

FLOWS = textwrap.dedent('''
    import os, sys
    from pathlib import Path
    from distributary import flow, task
    from distributary.runtime import flow_run

    @task
    def double(x):
        return 2 * x

    @flow
    def work(x: int = 1):
        # O_EXCL: a second execution of one run would fail here
        fd = os.open(Path(os.environ["MARKS"]) / flow_run.id, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.close(fd)
        return double(x)

    if __name__ == "__main__":
        work.serve("served", parameters={"x": 5}, tags=["api"])
''')


def test_work_pool_routes(server, api):
    pool = api.create_work_pool("local", type="process", concurrency_limit=4)
    assert pool.type == "process" and pool.concurrency_limit == 4
    assert "env" in pool.base_job_template["variables"]["properties"]
    with pytest.raises(ConfigurationError, match="already exists"):
        api.create_work_pool("local")
    with server.http() as http:
        assert http.post("work_pools/", json={"name": "local"}).status_code == 409
        listed = http.post("work_pools/filter", json={"work_pools": {"type": {"any_": ["process"]}}}).json()
        assert [p["name"] for p in listed] == ["local"] and listed[0]["status"] == "NOT_READY"  # no worker yet
        assert http.patch("work_pools/local", json={"is_paused": True}).status_code == 204
        assert http.get("work_pools/local").json()["status"] == "PAUSED"
        assert http.post("work_pools/local/workers/heartbeat", json={"name": "w1"}).status_code == 204
        workers = http.post("work_pools/local/workers/filter", json={}).json()
        assert [(w["name"], w["status"]) for w in workers] == [("w1", "ONLINE")]
        assert http.patch("work_pools/local", json={"is_paused": False}).status_code == 204
        assert http.get("work_pools/local").json()["status"] == "READY"  # Prefect's: a worker is online
        missing = http.get("work_pools/nowhere")
        assert missing.status_code == 404 and "work-pool create nowhere" in missing.text
    assert api.update_work_pool("local", paused=False).is_paused is False
    api.delete_work_pool("local")
    with pytest.raises(ObjectNotFound):
        api.read_work_pool("local")


def test_deployment_upsert_patch_schedules_pause_and_delete(server, api):
    dep = api.create_deployment(flow_name="etl", name="nightly", entrypoint="f.py:etl", parameters={"a": 1},
                                schedules=[Cron("0 2 * * *", timezone="America/New_York")])
    again = api.create_deployment(flow_name="etl", name="nightly", entrypoint="f.py:etl", tags=["t"],
                                  schedules=[Cron("0 2 * * *", timezone="America/New_York")],
                                  concurrency_limit=2, collision_strategy="CANCEL_NEW")
    assert again.id == dep.id and again.tags == ["t"]  # one deployment per flow and name (Prefect's upsert)
    assert again.concurrency_limit == 2 and again.concurrency_options.collision_strategy == "CANCEL_NEW"
    assert api.read_deployment_by_name("etl/nightly").id == dep.id

    start = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
    assert api.schedule_runs(dep.id, now=start) == 3
    assert api.schedule_runs(dep.id, now=start) == 0  # exactly once, however often it is asked
    with server.http() as http:
        # Prefect's shape: the schedule's kind by its key; added next to the existing one
        added = http.post(f"deployments/{dep.id}/schedules",
                          json=[{"schedule": {"interval": 3600, "timezone": "UTC"}, "active": True}])
        assert added.status_code == 201 and added.json()[0]["schedule"]["interval"] == 3600
        scheds = http.get(f"deployments/{dep.id}/schedules").json()
        # read back in Prefect's shape too: no `type` (Prefect's client refuses one), no null fields
        assert [sorted(s["schedule"]) for s in scheds] == [["cron", "day_or", "timezone"], ["interval", "timezone"]]
        assert http.patch(f"deployments/{dep.id}/schedules/{scheds[1]['id']}",
                          json={"active": False}).status_code == 204
        after = http.get(f"deployments/{dep.id}/schedules").json()
        assert [(s["id"], s["active"]) for s in after] == [(scheds[0]["id"], True), (scheds[1]["id"], False)]
        assert http.patch(f"deployments/{dep.id}", json={"description": "d", "paramters": {}}).status_code == 422
        assert http.patch(f"deployments/{dep.id}", json={"description": "d"}).status_code == 204
        assert http.post(f"deployments/{dep.id}/pause_deployment").status_code == 204
    paused = api.read_deployment(dep.id)
    assert paused.paused and paused.description == "d"
    assert api.read_due_runs([dep.id], before=start + dt.timedelta(days=365)) == []  # pausing removed them
    assert api.schedule_runs(dep.id, now=start) == 0
    api.update_deployment(dep.id, paused=False)
    assert api.schedule_runs(dep.id, now=start) == 3  # the inactive interval schedule makes none

    api.set_deployment_schedules(dep.id, [Interval(600)])  # replaced: the cron's future runs go with it
    due = api.read_due_runs([dep.id], before=start + dt.timedelta(days=365))
    assert due == []
    assert api.schedule_runs(dep.id, now=start) >= 3
    assert all(r.expected_start_time.minute % 10 == 0 for r in
               api.read_due_runs([dep.id], before=start + dt.timedelta(days=365)))
    api.delete_deployment(dep.id)
    with pytest.raises(ObjectNotFound):
        api.read_deployment(dep.id)


def test_a_run_is_claimed_once_and_cancelled_through_the_api(server, api):
    dep = api.create_deployment(flow_name="etl", name="manual", entrypoint="f.py:etl")
    run = api.create_flow_run_from_deployment(dep.id, name="my-run", parameters={"a": 2})
    assert run.name == "my-run"
    assert [api.claim_flow_run(run.id, worker_name=f"w{i}") for i in range(3)] == [True, False, False]
    assert api.count_deployment_runs(dep.id, ["PENDING"]) == 1
    api.set_infrastructure_pid(run.id, "flows:flow-run-1")  # a worker records where it submitted the run
    assert api.read_flow_run(run.id).infrastructure_pid == "flows:flow-run-1"
    with server.http() as http:
        listed = http.post("flow_runs/filter", json={"flow_runs": {"id": {"any_": [str(run.id)]}}}).json()
        assert listed[0]["infrastructure_pid"] == "flows:flow-run-1"
    assert api.cancel_flow_run(run.id).state_type == "CANCELLING"
    assert api.read_cancelling([run.id]) == {str(run.id)}
    waiting = api.create_flow_run_from_deployment(dep.id)
    assert api.cancel_flow_run(waiting.id).state_type == "CANCELLED"  # never started: Cancelled at once
    with pytest.raises(ConfigurationError, match="already finished"):
        api.cancel_flow_run(waiting.id)


def test_deploying_to_a_missing_pool_through_the_api_says_how_to_create_it(server, api):
    with server.http() as http:
        got = http.post("deployments/", json={"name": "d", "flow_name": "f", "work_pool_name": "nope"})
    assert got.status_code == 404 and "work-pool create nope" in got.text


@pytest.fixture
def client_dir(server, tmp_path):
    (tmp_path / "flows.py").write_text(FLOWS)
    marks = tmp_path / "marks"
    marks.mkdir()
    env = server.client_env(MARKS=str(marks), DISTRIBUTARY_RUNNER_POLL_INTERVAL="0.2")
    procs: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        procs.append(proc)
        return proc

    yield env, marks, start
    stop_all(procs, timeout=60)


def test_serve_and_run_deployment_over_http(server, api, client_dir):
    env, marks, start = client_dir
    proc = start("flows.py")
    dep = wait_for(lambda: _deployment(api, "work/served") or proc.poll() is not None, 120, "the deployment")
    assert proc.poll() is None, proc.communicate()[0]
    assert dep.parameters == {"x": 5} and dep.tags == ["api"]
    run = run_deployment("work/served", parameters={"x": 21}, timeout=120, poll_interval=0.2, storage=api)
    assert run.state_type == "COMPLETED", run.state
    assert sorted(os.listdir(marks)) == [str(run.id)]
    tasks = api.read_task_runs()
    assert [t.state_type.value for t in tasks if t.flow_run_id == run.id] == ["COMPLETED"]
    proc.terminate()
    assert proc.wait(60) == 0
    assert api.read_deployment(dep.id).paused  # serve() pauses its deployments when it stops


def test_deploy_command_and_workers_over_http(server, api, client_dir):
    env, marks, start = client_dir
    cli = [sys.executable, "-m", "distributary"]
    made = subprocess.run([*cli, "work-pool", "create", "remote", "--type", "process"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    cwd = marks.parent
    deployed = subprocess.run([*cli, "deploy", "flows.py:work", "-n", "pooled", "-p", "remote"], env=env, cwd=cwd,
                              capture_output=True, text=True, timeout=60)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    dep = api.read_deployment_by_name("work/pooled")
    assert dep.work_pool_name == "remote"
    assert dep.parameter_openapi_schema["properties"]["x"]["position"] == 0  # the flow's, sent over HTTP
    runs = [api.create_flow_run_from_deployment(dep.id, parameters={"x": i}).id for i in range(12)]
    workers = [start("-m", "distributary", "worker", "start", "--pool", "remote", "--name", f"w{i}", "--limit", "3")
               for i in range(2)]
    wait_for(lambda: api.count_deployment_runs(dep.id, ["COMPLETED"]) == 12 or any(
        w.poll() is not None for w in workers), 300, "12 completed runs")
    assert all(w.poll() is None for w in workers), [w.communicate()[0][-2000:] for w in workers]
    assert sorted(os.listdir(marks)) == sorted(str(r) for r in runs)  # each run executed exactly once
    assert {api.read_flow_run(r).worker_name for r in runs} <= {"w0", "w1"}
    assert {w.name for w in api.read_workers("remote")} == {"w0", "w1"}


def test_work_queue_cli_deploy_to_a_queue_and_a_queue_worker_over_http(server, api, client_dir):
    import json

    env, marks, start = client_dir

    def cli(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "distributary", *args], env=env, cwd=marks.parent,
                              capture_output=True, text=True, timeout=60)
        return done

    assert cli("work-pool", "create", "remote").returncode == 0
    made = cli("work-queue", "create", "slow", "--pool", "remote", "--limit", "2", "--priority", "1")
    assert made.returncode == 0, made.stderr
    listed = json.loads(cli("work-queue", "ls", "--pool", "remote", "-o", "json").stdout)
    assert [(q["name"], q["priority"], q["concurrency_limit"]) for q in listed] == [("slow", 1, 2), ("default", 2, None)]
    assert cli("work-queue", "pause", "slow", "--pool", "remote").returncode == 0
    assert cli("work-queue", "set-concurrency-limit", "slow", "5", "--pool", "remote").returncode == 0
    shown = json.loads(cli("work-queue", "inspect", "slow", "--pool", "remote", "-o", "json").stdout)
    assert (shown["is_paused"], shown["concurrency_limit"], shown["status"]) == (True, 5, "PAUSED")
    assert cli("work-queue", "resume", "slow", "--pool", "remote").returncode == 0
    assert cli("work-queue", "clear-concurrency-limit", "slow", "--pool", "remote").returncode == 0
    q = api.read_work_queue_by_name("remote", "slow")
    assert not q.is_paused and q.concurrency_limit is None  # the server's store has what the CLI sent
    taken = cli("work-queue", "create", "slow", "--pool", "remote")
    assert taken.returncode == 1 and "already has a queue 'slow'" in taken.stderr
    assert cli("work-queue", "delete", "slow", "--pool", "remote").returncode == 0
    gone = cli("work-queue", "inspect", "slow", "--pool", "remote")
    assert gone.returncode == 1 and "work-queue create slow --pool remote" in gone.stderr
    assert cli("work-queue", "delete", "default", "--pool", "remote").returncode == 1  # every pool keeps it

    deployed = cli("deploy", "flows.py:work", "-n", "queued", "-p", "remote", "-q", "urgent")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert cli("deploy", "flows.py:work", "-n", "plain", "-p", "remote").returncode == 0
    queued, plain = api.read_deployment_by_name("work/queued"), api.read_deployment_by_name("work/plain")
    assert (queued.work_queue_name, plain.work_queue_name) == ("urgent", "default")
    assert [x.name for x in api.read_work_queues("remote")] == ["default", "urgent"]  # made by the deploy
    waiting = api.create_flow_run_from_deployment(plain.id, parameters={"x": 2})
    urgent = api.create_flow_run_from_deployment(queued.id, parameters={"x": 3})
    refused = subprocess.run([sys.executable, "-m", "distributary", "deployment", "run", "work/queued", "--param",
                              "x=three"], env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "Validation failed for field 'x'" in refused.stderr  # a 409 from the server
    worker = start("-m", "distributary", "worker", "start", "--pool", "remote", "--work-queue", "urgent",
                   "--name", "urgent-worker")
    wait_for(lambda: api.read_flow_run(urgent.id).state_type == "COMPLETED" or worker.poll() is not None, 300,
             "the urgent run")
    assert worker.poll() is None, worker.communicate()[0][-2000:]
    left = api.read_flow_run(waiting.id)
    assert left.state_type == "SCHEDULED" and left.worker_name is None  # not its queue
    assert os.listdir(marks) == [str(urgent.id)]
    assert api.read_flow_run(urgent.id).worker_name == "urgent-worker"


def _deployment(storage, name):
    try:
        return storage.read_deployment_by_name(name)
    except LookupError:
        return None


@pytest.mark.slow
def test_serve_and_a_worker_over_http_on_postgresql(start_server, api_pg_server, tmp_path):
    """End to end on the real PostgreSQL fixture: a server on PostgreSQL, a serve() process and a worker that
    know only its URL, runs of both completed exactly once."""
    srv = start_server(env={"DISTRIBUTARY_API_DATABASE_CONNECTION_URL": api_pg_server.create_database("e2e")})
    api = ApiRunStorage(srv.api_url)
    (tmp_path / "flows.py").write_text(FLOWS)
    marks = tmp_path / "marks"
    marks.mkdir()
    env = srv.client_env(MARKS=str(marks), DISTRIBUTARY_RUNNER_POLL_INTERVAL="0.2")
    procs = [subprocess.Popen([sys.executable, "flows.py"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)]
    try:
        wait_for(lambda: _deployment(api, "work/served") or procs[0].poll() is not None, 120, "the deployment")
        served = run_deployment("work/served", timeout=120, poll_interval=0.2, storage=api)
        assert served.state_type == "COMPLETED", served.state
        api.create_work_pool("pg-pool")
        deployed = subprocess.run([sys.executable, "-m", "distributary", "deploy", "flows.py:work", "-n", "pooled",
                                   "-p", "pg-pool"], env=env, cwd=tmp_path, capture_output=True, text=True,
                                  timeout=60)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        procs.append(subprocess.Popen([sys.executable, "-m", "distributary", "worker", "start", "--pool", "pg-pool"],
                                      cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
        pooled = run_deployment("work/pooled", parameters={"x": 3}, timeout=120, poll_interval=0.2, storage=api)
        assert pooled.state_type == "COMPLETED", pooled.state
        assert sorted(os.listdir(marks)) == sorted([str(served.id), str(pooled.id)])
    finally:
        stop_all(procs, timeout=60)
        api.close()
