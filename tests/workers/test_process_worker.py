"""`distributary worker start --pool NAME` processes, end to end on the embedded run store: three workers drain
60 runs, each executed exactly once (the claim race itself, at 200 runs, is in tests/runstore/test_work_pools.py);
a worker killed with SIGKILL leaves no run Running; flow.deploy() to a pool and a queue (and its errors); a worker
started with `--work-queue` runs only that queue's runs."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from procs import stop_all, wait_for

from distributary.cli import main
from distributary.deployments.definition import load_flow
from distributary.errors import ConfigurationError, ObjectNotFound
from distributary.runstore import get_storage

ROOT = Path(__file__).resolve().parents[2]
FLOWS = textwrap.dedent('''
    import os, time
    from pathlib import Path
    from distributary import flow
    from distributary.runtime import flow_run

    @flow
    def work(mode: str = "ok"):
        # O_EXCL: a second execution of one run would fail here
        fd = os.open(Path(os.environ["MARKS"]) / flow_run.id, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.write(fd, os.environ.get("WHO", "").encode())
        os.close(fd)
        if mode == "sleep":
            time.sleep(300)
        return 1
''')


@pytest.fixture
def pool(run_home, tmp_path, monkeypatch):
    (tmp_path / "flows.py").write_text(FLOWS)
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv("MARKS", str(marks))
    monkeypatch.setenv("DISTRIBUTARY_RUNNER_POLL_INTERVAL", "0.2")
    assert main(["work-pool", "create", "local", "--type", "process"]) == 0
    work = load_flow("flows.py:work", str(tmp_path))
    dep_id = work.deploy("pooled", work_pool_name="local", job_variables={"env": {"WHO": "template-env"}})
    workers: list[subprocess.Popen] = []

    def start_worker(name: str, limit: int = 4, queues: tuple[str, ...] = ()) -> subprocess.Popen:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.Popen([sys.executable, "-m", "distributary.cli", "worker", "start", "--pool", "local",
                                 "--name", name, "--limit", str(limit), *[a for q in queues for a in ("-q", q)]],
                                env=env, cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        workers.append(proc)
        return proc

    yield dep_id, marks, start_worker
    stop_all(workers, timeout=60)


@pytest.mark.slow
def test_three_workers_run_each_of_60_runs_exactly_once(pool):
    dep_id, marks, start_worker = pool
    st = get_storage()
    runs = [st.create_flow_run_from_deployment(dep_id).id for _ in range(60)]
    procs = [start_worker(f"w{i}") for i in range(3)]
    wait_for(lambda: st.count_deployment_runs(dep_id, ["COMPLETED"]) == 60 or any(
        p.poll() is not None for p in procs), 600, "60 completed runs")
    assert all(p.poll() is None for p in procs), [p.communicate()[1] for p in procs if p.poll() is not None]
    assert sorted(os.listdir(marks)) == sorted(str(r) for r in runs)  # each run executed once (O_EXCL)
    assert {(marks / str(r)).read_text() for r in runs} == {"template-env"}  # the job variables' env
    got = [st.read_flow_run(r) for r in runs]
    assert {r.state_type for r in got} == {"COMPLETED"} and {r.run_count for r in got} == {1}
    assert {r.worker_name for r in got} <= {"w0", "w1", "w2"}
    for p in procs:
        p.send_signal(signal.SIGTERM)
        assert p.wait(60) == 0


def test_a_worker_killed_with_sigkill_leaves_no_run_running(pool, monkeypatch):
    dep_id, marks, start_worker = pool
    monkeypatch.setenv("DISTRIBUTARY_WORKER_HEARTBEAT_TIMEOUT", "3")
    st = get_storage()
    run = st.create_flow_run_from_deployment(dep_id, parameters={"mode": "sleep"})
    doomed = start_worker("doomed")
    wait_for(lambda: (marks / str(run.id)).exists(), 120, "the run to start")
    doomed.kill()  # SIGKILL: no cleanup at all
    doomed.wait(30)
    start_worker("survivor")  # it notices the missing heartbeats
    final = wait_for(lambda: (r := st.read_flow_run(run.id)).state_type == "CRASHED" and r, 120, "Crashed")
    assert "heartbeats" in final.state.message


def test_deploy_errors_say_what_to_do(pool, tmp_path):
    work = load_flow("flows.py:work", str(tmp_path))
    with pytest.raises(ObjectNotFound, match="work-pool create nowhere --type process"):
        work.deploy("x", work_pool_name="nowhere")
    assert main(["work-pool", "create", "k8s", "--type", "kubernetes"]) == 0
    with pytest.raises(ConfigurationError, match="Docker engine.*build=False"):
        work.deploy("x", work_pool_name="k8s", image="my-registry/x:latest")
    with pytest.raises(ConfigurationError, match="unknown job variable"):
        work.deploy("x", work_pool_name="local", job_variables={"gpu": 1})


def test_deploy_command_registers_a_pool_deployment(pool, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["deploy", "flows.py:work", "-n", "cli-made", "-p", "local", "--cron", "0 3 * * *", "--timezone",
                 "Europe/Berlin", "--param", "mode=ok", "--tag", "cli", "-jv", 'env={"A": "1"}']) == 0
    dep = get_storage().read_deployment_by_name("work/cli-made")
    assert dep.work_pool_name == "local" and dep.parameters == {"mode": "ok"} and dep.tags == ["cli"]
    assert dep.schedules[0].schedule == {"type": "cron", "cron": "0 3 * * *", "timezone": "Europe/Berlin",
                                         "day_or": True}
    assert dep.job_variables == {"env": {"A": "1"}}
    assert main(["deploy", "flows.py:work", "-n", "x", "-p", "missing"]) == 1


def test_from_source_git_repository_deployed_and_run_by_a_worker(pool, tmp_path):
    from distributary import flow

    dep_id, marks, start_worker = pool
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "pipeline.py").write_text(FLOWS.replace("def work(", "def from_git("))
    for cmd in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]):
        subprocess.run(["git", *cmd], cwd=repo, check=True)
    src = flow.from_source(source=f"file://{repo}", entrypoint="pipeline.py:from_git")
    new_id = src.deploy("from-git", work_pool_name="local")
    dep = get_storage().read_deployment(new_id)
    assert dep.entrypoint == "pipeline.py:from_git" and "sources" in dep.path and dep.path != str(repo)
    run = get_storage().create_flow_run_from_deployment(new_id)
    start_worker("git-worker")
    wait_for(lambda: get_storage().read_flow_run(run.id).state_type == "COMPLETED", 120, "the run from git")
    assert (marks / str(run.id)).exists()
    with pytest.raises(ConfigurationError, match="could not clone"):
        flow.from_source(source=f"file://{tmp_path}/nope.git", entrypoint="x.py:y")


def test_a_worker_of_one_queue_runs_only_that_queues_runs(pool, tmp_path):
    from distributary.workers.process import ProcessWorker

    dep_id, marks, start_worker = pool
    work = load_flow("flows.py:work", str(tmp_path))
    st = get_storage()
    urgent_id = work.deploy("urgent", work_pool_name="local", work_queue_name="urgent")  # the pool lacks it: made
    assert st.read_deployment(urgent_id).work_queue_name == "urgent"
    assert [(q.name, q.priority) for q in st.read_work_queues("local")] == [("default", 1), ("urgent", 2)]
    plain = st.create_flow_run_from_deployment(dep_id)
    urgent = [st.create_flow_run_from_deployment(urgent_id) for _ in range(2)]
    assert plain.work_queue_name == "default" and {r.work_queue_name for r in urgent} == {"urgent"}
    start_worker("urgent-only", queues=("urgent",))
    for run in urgent:  # the worker polls every 0.2 s meanwhile: the default queue's run would have been claimed
        wait_for(lambda r=run: st.read_flow_run(r.id).state_type == "COMPLETED", 120, "the urgent runs")
    left = st.read_flow_run(plain.id)
    assert left.state_type == "SCHEDULED" and left.worker_name is None and not (marks / str(plain.id)).exists()
    assert {st.read_flow_run(r.id).worker_name for r in urgent} == {"urgent-only"}
    assert st.read_work_queue_by_name("local", "urgent").status == "READY"  # polled by its worker
    assert st.read_work_queue_by_name("local", "default").status == "NOT_READY"  # nobody polls it
    start_worker("everything")  # no --work-queue: every queue of the pool
    wait_for(lambda: st.read_flow_run(plain.id).state_type == "COMPLETED", 120, "the default queue's run")
    with pytest.raises(ObjectNotFound, match="work-queue create nope --pool local"):
        ProcessWorker("local", work_queues=["nope"])


def test_deploy_command_to_a_queue(pool, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["deploy", "flows.py:work", "-n", "queued", "-p", "local", "-q", "nightly",
                 "--no-enforce-parameter-schema"]) == 0
    dep = get_storage().read_deployment_by_name("work/queued")
    assert dep.work_queue_name == "nightly" and dep.enforce_parameter_schema is False
    assert get_storage().read_work_queue_by_name("local", "nightly").work_pool_name == "local"
    run = get_storage().create_flow_run_from_deployment(dep.id, parameters={"mode": 3})  # not a str: let through
    assert run.work_queue_name == "nightly" and run.parameters == {"mode": 3}
