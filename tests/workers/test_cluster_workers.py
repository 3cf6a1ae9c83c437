"""`distributary worker start --type dask | ray`: each flow run of the pool is submitted to an existing cluster by
address and runs there (its process started by a cluster task, its tasks on that cluster's runner), against the
real Dask processes and Ray instance of tests/runners; the job template's env reaches the run; a cancelled run
is stopped on the cluster."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from procs import stop_all, wait_for

from distributary.cli import main
from distributary.deployments.definition import load_flow
from distributary.runstore import get_storage

ROOT = Path(__file__).resolve().parents[2]
FLOWS = textwrap.dedent('''
    import os, time
    from pathlib import Path
    from distributary import flow, task
    from distributary.runtime import flow_run

    def cmdline(pid):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\\0", b" ").decode()

    @task
    def where():
        return os.getpid(), cmdline(os.getpid())

    @flow
    def on_cluster(sleep: float = 0):
        pid, task_cmd = where.submit().result()
        Path(os.environ["MARKS"], flow_run.id).write_text("\\n".join(
            [str(os.getppid()), cmdline(os.getppid()), str(pid), task_cmd]))
        time.sleep(sleep)
''')


@pytest.fixture
def cluster_pool(run_home, tmp_path, monkeypatch):
    (tmp_path / "flows.py").write_text(FLOWS)
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv("DISTRIBUTARY_RUNNER_POLL_INTERVAL", "0.2")
    procs: list[subprocess.Popen] = []

    def make(kind: str, address: str):
        assert main(["work-pool", "create", kind, "--type", kind]) == 0
        work = load_flow("flows.py:on_cluster", str(tmp_path))
        dep_id = work.deploy(f"on-{kind}", work_pool_name=kind, job_variables={"env": {"MARKS": str(marks)}})
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        env.pop("MARKS", None)  # only the job template's env brings it to the run
        proc = subprocess.Popen([sys.executable, "-m", "distributary", "worker", "start", "--pool", kind,
                                 "--address", address, "--name", f"{kind}-worker"], env=env, cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs.append(proc)
        return dep_id, proc

    yield make, marks
    stop_all(procs, timeout=60)


def _finished(st, run_id, proc):
    run = st.read_flow_run(run_id)
    if proc.poll() is not None:
        raise AssertionError(f"the worker exited: {proc.communicate()[0][-3000:]}")
    return run.state is not None and run.state.is_final() and run


@pytest.mark.slow
def test_dask_worker_runs_flow_runs_on_the_cluster(cluster_pool, dask_processes):
    make, marks = cluster_pool
    dep_id, proc = make("dask", dask_processes.address)
    st = get_storage()
    runs = [st.create_flow_run_from_deployment(dep_id).id for _ in range(3)]
    done = [wait_for(lambda r=r: _finished(st, r, proc), 180, "the run on Dask") for r in runs]
    assert [r.state_type for r in done] == ["COMPLETED"] * 3, [r.state for r in done]
    dask_pids = set(dask_processes.worker_pids().values())
    for r in runs:
        parent, parent_cmd, task_pid, _ = (marks / str(r)).read_text().split("\n")
        assert int(parent) in dask_pids, parent_cmd  # the run's process was started by a Dask worker
        assert int(task_pid) in dask_pids  # and its task ran on the cluster's runner
    tasks = st.read_task_runs()
    assert {t.flow_run_id for t in tasks if t.state_type == "COMPLETED"} >= set(runs)


@pytest.mark.slow
def test_a_cancelled_run_is_stopped_on_the_dask_cluster(cluster_pool, dask_processes):
    make, marks = cluster_pool
    dep_id, proc = make("dask", dask_processes.address)
    st = get_storage()
    run = st.create_flow_run_from_deployment(dep_id, parameters={"sleep": 300})
    wait_for(lambda: (marks / str(run.id)).exists(), 180, "the run to start on Dask")
    st.cancel_flow_run(run.id)
    final = wait_for(lambda: _finished(st, run.id, proc), 60, "the run to be Cancelled")
    assert final.state_type == "CANCELLED"
    dask_processes.wait_idle(60)  # the cluster task ended: its process was stopped


@pytest.mark.slow
def test_ray_worker_runs_flow_runs_on_the_cluster(cluster_pool, ray_instance):
    make, marks = cluster_pool
    dep_id, proc = make("ray", ray_instance)
    st = get_storage()
    run = st.create_flow_run_from_deployment(dep_id).id
    done = wait_for(lambda: _finished(st, run, proc), 240, "the run on Ray")
    assert done.state_type == "COMPLETED", done.state
    parent, parent_cmd, task_pid, task_cmd = (marks / str(run)).read_text().split("\n")
    assert "ray::" in parent_cmd or "default_worker" in parent_cmd  # started by a Ray worker process
    assert "ray::" in task_cmd or "default_worker" in task_cmd  # its task ran on the Ray cluster
