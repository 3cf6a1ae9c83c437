"""The docker and kubernetes workers, against CLI shims: no Docker daemon or Kubernetes cluster exists on the
test machines, so `docker` and `kubectl` are tests/workers/container_shim.py, put first on PATH. The shim records
each call and "runs" a container by running its command as a local process with only the environment the call
passed, so a flow run really runs through the worker and the real run store (the embedded one, and a real
server's over HTTP); it does not test Docker or
Kubernetes themselves (images, pulls, networking, a real API server)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from container_shim import Shims
from procs import stop_all, wait_for

from distributary.cli import main
from distributary.deployments.definition import load_flow
from distributary.runstore import get_storage
from distributary.workers.container_worker import ContainerWorker

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "server"))
from api_server import ServerProcess  # noqa: E402

FLOWS = textwrap.dedent('''
    import os, time
    from pathlib import Path
    from distributary import flow
    from distributary.runtime import flow_run

    @flow
    def work(mode: str = "ok"):
        Path(os.environ["MARKS"], flow_run.id).write_text(os.environ.get("WHO", ""))
        if mode == "sleep":
            time.sleep(300)
        return 1
''')


@pytest.fixture
def shims(tmp_path, monkeypatch):
    s = Shims(tmp_path)
    for k, v in s.env().items():
        monkeypatch.setenv(k, v)
    return s


@pytest.fixture
def container_pool(run_home, tmp_path, monkeypatch, shims):
    """make(kind, **job_variables) -> deployment id (a pool of that kind, a deployment on it whose env brings
    MARKS to the run); start() runs a worker of the pool in a thread until the test ends."""
    (tmp_path / "flows.py").write_text(FLOWS)
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.delenv("MARKS", raising=False)
    work = load_flow("flows.py:work", str(tmp_path))
    threads: list[tuple[ContainerWorker, threading.Thread]] = []

    def make(kind: str, name: str = "in-container", **job_variables):
        if kind not in {p.name for p in get_storage().read_work_pools()}:
            assert main(["work-pool", "create", kind, "--type", kind]) == 0
        env = {"MARKS": str(marks), **job_variables.pop("env", {})}
        return work.deploy(name, work_pool_name=kind, build=False,
                           job_variables={"image": "registry.example/flows:1", "env": env, **job_variables})

    def start(kind: str) -> ContainerWorker:
        worker = ContainerWorker(kind, name=f"{kind}-worker", query_seconds=0.2)
        t = threading.Thread(target=worker.start, daemon=True)
        t.start()
        threads.append((worker, t))
        return worker

    yield make, start, marks
    for worker, t in threads:
        worker.stop()
        t.join(60)


def _final(run_id):
    run = get_storage().read_flow_run(run_id)
    return run if run.state is not None and run.state.is_final() else None


def _after(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_docker_pool_runs_a_deployment_to_completed_with_the_job_variables(container_pool, shims, monkeypatch):
    make, start, marks = container_pool
    monkeypatch.setenv("DISTRIBUTARY_API_AUTH_STRING", "user:s3cret")  # a secret setting: never in the arguments
    dep = make("docker", env={"WHO": "from-job-env"}, labels={"team": "data"}, cpu="1.5", memory="512m")
    run = get_storage().create_flow_run_from_deployment(dep)
    worker = start("docker")
    done = wait_for(lambda: _final(run.id), 90, "the run in its container")
    assert done.state_type == "COMPLETED", done.state.message
    assert (marks / str(run.id)).read_text() == "from-job-env"  # the job's env reached the run, and it ran once
    (call,) = shims.calls("docker", "run")
    argv = call["argv"]
    image = argv.index("registry.example/flows:1")
    assert argv[image + 1:] == ["python", "-m", "distributary.deployments.execute", str(run.id)]
    (name,) = _after(argv, "--name")
    assert re.fullmatch(f"flow-run-{run.id}-[0-9a-f]{{6}}", name)  # unique per submission: a retry submits again
    assert {"team=data", f"io.distributary.flow-run-id={run.id}"} <= set(_after(argv, "--label"))
    env = _after(argv, "--env")
    assert {"WHO=from-job-env", f"DISTRIBUTARY__FLOW_RUN_ID={run.id}",
            f"DISTRIBUTARY_HOME={os.environ['DISTRIBUTARY_HOME']}"} <= set(env)
    assert "DISTRIBUTARY_API_AUTH_STRING" in env and not any("s3cret" in a for a in argv)
    assert _after(argv, "--cpus") == ["1.5"] and _after(argv, "--memory") == [f"{512 * 1024 ** 2}b"]
    assert done.infrastructure_pid == shims.calls("docker", "inspect")[0]["argv"][-1]  # recorded, and polled
    wait_for(lambda: not worker.in_flight, 30, "the worker to see the container end")
    assert (shims.dir / f"{done.infrastructure_pid}.exit").read_text() == "0"


def test_docker_submission_that_fails_leaves_the_run_crashed_and_the_worker_going(container_pool, shims):
    make, start, marks = container_pool
    bad = get_storage().create_flow_run_from_deployment(make("docker", "bad", image="registry.example/missing:1"))
    no_image = get_storage().create_flow_run_from_deployment(make("docker", "no-image", image=None))
    dies = get_storage().create_flow_run_from_deployment(make("docker", "dies", command="python -c 'exit(3)'"))
    start("docker")
    crashed = wait_for(lambda: _final(bad.id), 60, "the failed submission")
    assert crashed.state_type == "CRASHED"
    assert "pull access denied for registry.example/missing:1" in crashed.state.message
    assert "docker pull IMAGE" in crashed.state.message  # what to do
    unset = wait_for(lambda: _final(no_image.id), 60, "the run without an image")
    assert unset.state_type == "CRASHED" and "needs an image: set job_variables" in unset.state.message
    died = wait_for(lambda: _final(dies.id), 60, "the run whose container died")
    assert died.state_type == "CRASHED" and "container exited with code 3" in died.state.message
    assert f"docker logs {died.infrastructure_pid}" in died.state.message
    good = get_storage().create_flow_run_from_deployment(make("docker", "good"))
    assert wait_for(lambda: _final(good.id), 90, "a later run").state_type == "COMPLETED"


def test_cancelling_a_docker_run_stops_its_container(container_pool, shims):
    make, start, marks = container_pool
    run = get_storage().create_flow_run_from_deployment(make("docker"), parameters={"mode": "sleep"})
    start("docker")
    wait_for(lambda: (marks / str(run.id)).exists(), 90, "the run to start in its container")
    cid = wait_for(lambda: get_storage().read_flow_run(run.id).infrastructure_pid, 10, "the container id")
    get_storage().cancel_flow_run(run.id)
    done = wait_for(lambda: _final(run.id), 60, "the cancelled run")
    assert done.state_type == "CANCELLED"
    assert [c["argv"] for c in shims.calls("docker", "stop")] == [["stop", cid]]
    assert (shims.dir / f"{cid}.exit").read_text() == str(128 + 15)  # the container's process got SIGTERM


def test_kubernetes_pool_runs_a_deployment_as_a_job_through_the_cli_worker(container_pool, shims, tmp_path):
    make, _, marks = container_pool
    dep = make("kubernetes", env={"WHO": "k8s-env"}, namespace="flows", labels={"team": "data"}, cpu="500m")
    run = get_storage().create_flow_run_from_deployment(dep)
    worker = subprocess.Popen([sys.executable, "-m", "distributary", "worker", "start", "--pool", "kubernetes"],
                              env=dict(os.environ, PYTHONPATH=str(ROOT), DISTRIBUTARY_RUNNER_POLL_INTERVAL="0.2"),
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        done = wait_for(lambda: _final(run.id) or worker.poll() is not None, 90, "the run in its Job")
        assert worker.poll() is None, worker.communicate()[0][-3000:]
    finally:
        stop_all([worker], timeout=60)
    assert done.state_type == "COMPLETED", done.state.message
    assert (marks / str(run.id)).read_text() == "k8s-env"
    assert done.infrastructure_pid.startswith(f"flows:flow-run-{run.id}-")
    (apply,) = shims.calls("kubectl", "apply")
    assert apply["argv"][:3] == ["apply", "-f", "-"]
    job = json.loads(apply["stdin"])
    assert job["kind"] == "Job" and job["metadata"]["namespace"] == "flows"
    assert job["metadata"]["labels"] == {"team": "data", "distributary.io/flow-run-id": str(run.id)}
    (c,) = job["spec"]["template"]["spec"]["containers"]
    assert c["image"] == "registry.example/flows:1" and c["resources"]["limits"] == {"cpu": "500m"}
    assert c["command"] == ["python", "-m", "distributary.deployments.execute", str(run.id)]
    assert {"name": "WHO", "value": "k8s-env"} in c["env"]
    assert shims.calls("kubectl", "get")[0]["argv"][:5] == ["get", "jobs,pods", "-n", "flows", "-l"]


def test_kubernetes_failures_crash_the_run_with_what_failed(container_pool, shims):
    make, start, marks = container_pool
    st = get_storage()
    refused = st.create_flow_run_from_deployment(make("kubernetes", "refused", image="registry.example/forbidden:1"))
    no_pull = st.create_flow_run_from_deployment(make("kubernetes", "no-pull", image="registry.example/missing:1"))
    start("kubernetes")
    r = wait_for(lambda: _final(refused.id), 60, "the refused Job")
    assert r.state_type == "CRASHED" and "cannot create resource \"jobs\"" in r.state.message
    assert "kubectl auth can-i create jobs" in r.state.message
    p = wait_for(lambda: _final(no_pull.id), 60, "the Job whose image cannot be pulled")
    assert p.state_type == "CRASHED" and "ErrImagePull" in p.state.message
    assert [c["argv"][:2] for c in shims.calls("kubectl", "delete")] == [["delete", "job"]]  # not left waiting


def test_cancelling_a_kubernetes_run_deletes_its_job(container_pool, shims):
    make, start, marks = container_pool
    run = get_storage().create_flow_run_from_deployment(make("kubernetes"), parameters={"mode": "sleep"})
    start("kubernetes")
    wait_for(lambda: (marks / str(run.id)).exists(), 90, "the run to start in its Job")
    get_storage().cancel_flow_run(run.id)
    assert wait_for(lambda: _final(run.id), 60, "the cancelled run").state_type == "CANCELLED"
    (delete,) = shims.calls("kubectl", "delete")
    job = get_storage().read_flow_run(run.id).infrastructure_pid
    assert job.startswith("default:flow-run-") and delete["argv"][:5] == ["delete", "job", job[8:], "-n", "default"]


def test_docker_worker_over_a_server_gives_the_container_the_api_url(run_home, shims, tmp_path):
    """A worker that knows only the server's URL: the container gets DISTRIBUTARY_API_URL, and the run records
    through the server (its state and infrastructure_pid, set over PATCH /flow_runs/{id})."""
    from distributary.runstore.api_storage import ApiRunStorage

    srv = ServerProcess(tmp_path / "server").start()
    api = ApiRunStorage(srv.api_url)
    worker, out = None, ""
    try:
        (tmp_path / "flows.py").write_text(FLOWS)
        marks = tmp_path / "marks"
        marks.mkdir()
        api.create_work_pool("dpool", type="docker")
        dep = api.create_deployment(flow_name="work", name="over-http", entrypoint="flows.py:work",
                                    path=str(tmp_path), work_pool_name="dpool",
                                    job_variables={"image": "registry.example/flows:1", "env": {"MARKS": str(marks)}})
        run = api.create_flow_run_from_deployment(dep.id)
        env = srv.client_env(DISTRIBUTARY_RUNNER_POLL_INTERVAL="0.2", PYTHONPATH=str(ROOT))
        env.update(shims.env(path=env.get("PATH")))
        worker = subprocess.Popen([sys.executable, "-m", "distributary", "worker", "start", "--pool", "dpool"],
                                  env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

        def final():
            assert worker.poll() is None, worker.communicate()[0][-3000:]
            got = api.read_flow_run(run.id)
            return got if got.state is not None and got.state.is_final() and got.infrastructure_pid else None

        done = wait_for(final, 90, "the run in its container, through the server")
        assert done.state_type == "COMPLETED", done.state.message
        assert (marks / str(run.id)).exists()
        (call,) = shims.calls("docker", "run")
        assert f"DISTRIBUTARY_API_URL={srv.api_url}" in _after(call["argv"], "--env")
        assert done.infrastructure_pid == shims.calls("docker", "inspect")[0]["argv"][-1]
    finally:
        if worker is not None:
            if worker.poll() is None:
                worker.terminate()
            out = worker.communicate(timeout=60)[0]
        api.close()
        srv.stop()
    assert "inside a container localhost is the container itself" in out  # the worker warns at start


@pytest.mark.slow
def test_a_container_outlives_its_killed_worker_until_another_worker_stops_it(container_pool, shims, tmp_path,
                                                                              monkeypatch):
    make, start, marks = container_pool
    monkeypatch.setenv("DISTRIBUTARY_WORKER_HEARTBEAT_TIMEOUT", "2")
    run = get_storage().create_flow_run_from_deployment(make("docker"), parameters={"mode": "sleep"})
    doomed = subprocess.Popen([sys.executable, "-m", "distributary", "worker", "start", "--pool", "docker", "--name",
                               "doomed"], env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (marks / str(run.id)).exists(), 90, "the run to start in its container")
        cid = wait_for(lambda: get_storage().read_flow_run(run.id).infrastructure_pid, 10, "the container id")
        doomed.kill()  # SIGKILL: no cleanup; the container runs on
        doomed.wait(30)
    finally:
        stop_all([doomed])
    assert not (shims.dir / f"{cid}.exit").exists()
    start("docker")  # it notices the missing heartbeats, Crashes the run and stops its container
    crashed = wait_for(lambda: _final(run.id), 60, "the orphaned run")
    assert crashed.state_type == "CRASHED" and "heartbeats" in crashed.state.message
    wait_for(lambda: (shims.dir / f"{cid}.exit").exists(), 30, "the orphaned container to be stopped")
    assert ["stop", cid] in [c["argv"] for c in shims.calls("docker", "stop")]
