"""The seed's API examples (examples/0*.py) run unchanged except for the import line."""
from __future__ import annotations

import runpy
import time
from pathlib import Path

import httpx
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, run_name: str = "__main__") -> dict:
    return runpy.run_path(str(EXAMPLES / name), run_name=run_name)


class FakeGitHub:
    """Stands in for the remote HTTP API the seed's examples call (no network here)."""

    def __init__(self, plan: dict[str, list[int]]):
        self.plan = plan
        self.calls: list[str] = []

    def get(self, url: str, **kwargs):
        self.calls.append(url)
        codes = self.plan.get(url, [200])
        code = codes.pop(0) if len(codes) > 1 else codes[0]
        request = httpx.Request("GET", url)
        return httpx.Response(code, json={"stargazers_count": 42, "url": url}, request=request)


def test_basic_flow_logs_prints(monkeypatch, capfd):
    fake = FakeGitHub({})
    monkeypatch.setattr(httpx, "get", fake.get)
    run_example("01_basic_flow.py")
    assert fake.calls == ["https://api.github.com/repos/PrefectHQ/prefect"]
    out, err = capfd.readouterr()
    lines = [line for line in err.splitlines() if "PrefectHQ/prefect has 42 stars!" in line]
    # log_prints=True: the print became a log line with time, level and the task run's name
    assert len(lines) == 1 and "| INFO    | get_stars-0 - " in lines[0], err
    assert "has 42 stars" not in out


def test_retries_example_retries_server_errors_but_not_404(monkeypatch):
    ok, flaky, missing = "http://api.test/ok", "http://api.test/flaky", "http://api.test/missing"
    fake = FakeGitHub({flaky: [500, 200], missing: [404]})
    monkeypatch.setattr(httpx, "get", fake.get)
    ns = run_example("02_retries.py", run_name="seed_retries")
    t0 = time.monotonic()
    assert ns["data_pipeline"]([ok, flaky]) == [{"stargazers_count": 42, "url": ok},
                                                {"stargazers_count": 42, "url": flaky}]
    assert fake.calls.count(flaky) == 2
    assert time.monotonic() - t0 >= 2.0  # exponential_backoff(backoff_factor=2): first retry after 2 s
    with pytest.raises(httpx.HTTPStatusError):
        ns["data_pipeline"]([missing])
    assert fake.calls.count(missing) == 1  # retry_handler refuses to retry a 404


def test_submit_and_wait_runs_concurrently(capsys):
    t0 = time.monotonic()
    run_example("03_submit_wait.py")
    elapsed = time.monotonic() - t0
    out = capsys.readouterr().out
    assert "Processed 10 items" in out
    assert sorted(eval(out.split("items: ")[1].strip())) == [i * 2 for i in range(10)]
    assert elapsed < 6  # ten 1-second tasks on the thread pool, not one after the other


def test_map_and_unmapped(capsys):
    run_example("04_map_unmapped.py")
    out = capsys.readouterr().out
    assert "Sums: [11, 12, 13, 14, 15]" in out
    assert "Products: [5, 10, 15, 20, 25]" in out


def test_states(capsys):
    ns = run_example("06_states.py")
    assert "Flow result: {'processed': True, 'required_field': 'test'}" in capsys.readouterr().out
    state = ns["stateful_workflow"]({"other": 1}, return_state=True)
    assert state.is_failed() and state.message == "Validation failed: missing required_field"
    with pytest.raises(Exception, match="Validation failed: missing required_field"):
        ns["stateful_workflow"]({"other": 1})
    ns["check_task_states"]()
    assert "Task completed with result: True" in capsys.readouterr().out


def test_state_hooks(capsys):
    with pytest.raises(ValueError, match="Intentional failure"):
        run_example("07_state_hooks.py")
    out = capsys.readouterr().out
    assert out.count("Task risky_task completed successfully") == 1
    assert out.count("Task risky_task failed with message:") == 1
    assert "Flow monitored-workflow finished" not in out  # the flow failed, so on_completion did not run


def test_failure_handling_in_concurrent_work(capsys):
    ns = run_example("08_concurrent_failures.py")
    out = capsys.readouterr().out
    assert "✓ Processed: 7 records" in out and "✗ Failed: 3 records" in out
    assert sorted(r["id"] for r in ns["results"]) == [1, 2, 4, 5, 7, 8, 10]


def test_caching_example_second_process_gets_every_result_from_the_cache(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "DISTRIBUTARY_HOME": str(tmp_path)}

    def run() -> str:
        out = subprocess.run([sys.executable, str(EXAMPLES / "05_caching.py")], env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stdout

    first, second = run(), run()
    # In the first process the second calls of each task are already cache hits (debug is not in the key).
    assert first.count("Computing 1 + 2...") == 1 and first.count("Fetching https://api.example.com...") == 1
    assert second == ""  # every result came from DISTRIBUTARY_HOME/storage
    assert any((tmp_path / "storage").iterdir())


def test_artifacts_example(run_home):
    from distributary.artifacts import Artifact
    from distributary.client.orchestration import get_client
    from distributary.engine import transitions

    run_example("09_artifacts.py")
    transitions.flush(30)
    assert "# Daily Report" in Artifact.get("daily-report").data
    assert Artifact.get("customer-list").data[0] == {"id": "001", "name": "Acme Corp", "status": "Active"}
    assert Artifact.get("output-data").data == "[Download Output](https://storage.example.com/output.csv)"
    progress = [a for a in get_client(sync_client=True).read_artifacts() if a.type == "progress"]
    assert [p.data for p in progress] == [100.0]


def test_list_flows_example(run_home, capsys):
    import uuid

    from distributary.engine import transitions
    from distributary.runs import FLOW_RUN_CREATED, FlowRun
    from distributary.runstore import ensure_sink
    from distributary.states import Pending

    sink = ensure_sink()
    runs = [FlowRun(uuid.uuid4(), f"r{i}", name, {}, frozenset(), Pending()) for i, name in enumerate(["a", "b"])]
    sink.handle([(FLOW_RUN_CREATED, r, None) for r in runs])
    transitions.flush(30)
    run_example("10_list_flows.py")
    out = capsys.readouterr().out
    assert sorted(line.split(":")[0] for line in out.splitlines()) == ["a", "b"]


# -- deployments: the serve() examples block until stopped, so each runs as a process (as users run it) -----------
MY_FLOW = '''
from distributary import flow

@flow(name="my-flow", log_prints=True)
def my_flow(param1: str = "default"):
    print(f"got {param1}")
    return param1

if __name__ == "__main__":
    my_flow.serve(name="my-deployment")
'''


def _serve(script: Path, deployment: str, cwd: Path):
    """Start `python script` (a serve() process) and wait until it has registered `deployment`."""
    import os
    import subprocess
    import sys

    from distributary.runstore import get_storage

    env = dict(os.environ, PYTHONPATH=str(EXAMPLES.parent), DISTRIBUTARY_RUNNER_POLL_INTERVAL="0.2")
    proc = subprocess.Popen([sys.executable, str(script)], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            return proc, get_storage().read_deployment_by_name(deployment)
        except LookupError:
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "the serve() process did not register its deployment"
            time.sleep(0.1)


def _stop(proc) -> str:
    import signal

    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out  # a graceful stop
    return out


def test_serve_example_registers_a_cron_deployment_and_runs_it(run_home, tmp_path):
    from distributary.deployments import run_deployment

    proc, dep = _serve(EXAMPLES / "11_serve.py", "daily-etl/daily-etl-deployment", tmp_path)
    try:
        assert dep.tags == ["etl", "production"] and dep.parameters == {"source": "production"}
        assert [s.schedule["cron"] for s in dep.schedules] == ["0 6 * * *"]
        run = run_deployment("daily-etl/daily-etl-deployment", timeout=120)
        assert run.state.is_completed(), run.state
    finally:
        out = _stop(proc)
    assert "Running daily ETL pipeline..." in out
    assert "does not take parameter(s) source" in out  # the seed passes a parameter its flow does not take


def test_run_deployment_example(run_home, tmp_path, capsys):
    (tmp_path / "my_flow.py").write_text(MY_FLOW)
    from distributary.runstore import get_storage

    proc, dep = _serve(tmp_path / "my_flow.py", "my-flow/my-deployment", tmp_path)
    try:
        run_example("12_run_deployment.py")
        # the first run (timeout=0) is not waited for by the example: it may still be starting when the second ends
        deadline = time.monotonic() + 120
        while get_storage().count_deployment_runs(dep.id, ["COMPLETED"]) < 2:
            assert time.monotonic() < deadline, "the example's first run did not complete"
            time.sleep(0.2)
    finally:
        out = _stop(proc)
    printed = capsys.readouterr().out
    assert "Started flow run: " in printed and "Flow run completed with state: Completed()" in printed
    assert out.count("got value1") == 2  # both runs ran, in the serve() process's subprocesses


def test_schedules_example_serves_the_cron_deployment_in_new_york_time(run_home, tmp_path):
    import datetime as dt
    from zoneinfo import ZoneInfo

    from distributary.runstore import get_storage

    proc, dep = _serve(EXAMPLES / "13_schedules.py", "scheduled-flow/cron-deployment", tmp_path)
    try:
        deadline = time.monotonic() + 60
        while len(runs := get_storage().read_due_runs([dep.id], before=time.time() + 400 * 86400)) < 3:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        _stop(proc)  # SIGTERM ends the script in its first serve(), as Prefect's does
    ny = [r.expected_start_time.astimezone(ZoneInfo("America/New_York")) for r in runs]
    assert all(t.hour == 9 and t.minute == 0 and t.weekday() < 5 for t in ny)
    assert all(t > dt.datetime.now(dt.timezone.utc) for t in ny)


def test_schedules_example_interval_and_rrule_forms(monkeypatch):
    """The example's second and third serve() calls (the first one blocks): the deployments they would serve."""
    import datetime as dt

    from distributary.flows import Flow

    made = []
    monkeypatch.setattr(Flow, "serve", lambda self, name=None, **kw: made.append(self.to_deployment(name, **kw)))
    run_example("13_schedules.py")
    cron, interval, rrule = (d.schedules[0] for d in made)
    assert [d.name for d in made] == ["cron-deployment", "interval-deployment", "rrule-deployment"]
    assert cron.timezone == "America/New_York" and interval.interval == dt.timedelta(minutes=30)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    assert [d.day for d in rrule.get_dates(3, start=start)] == [30, 27, 31]  # last weekdays of Jan-Mar 2026


def test_deploy_example_to_a_kubernetes_pool(run_home, capsys):
    """The `.deploy()` example after `work-pool create kubernetes-pool --type kubernetes`, with build=False."""
    from distributary.cli import main
    from distributary.runstore import get_storage
    from distributary.runstore.work_pools import render_job

    assert main(["work-pool", "create", "kubernetes-pool", "--type", "kubernetes"]) == 0
    run_example("14_deploy.py")
    dep = get_storage().read_deployment_by_name("ml-training-pipeline/ml-training")
    assert dep.work_pool_name == "kubernetes-pool" and dep.tags == ["ml", "training"]
    assert dep.parameters == {"dataset": "training_data_v2", "epochs": 50} and dep.concurrency_limit == 3
    assert [s.schedule["cron"] for s in dep.schedules] == ["0 0 * * 0"]
    job = render_job(get_storage().read_work_pool("kubernetes-pool").base_job_template, dep.job_variables)
    assert job["image"] == "my-registry/ml-training:latest" and job["cpu"] == "4" and job["memory"] == "16Gi"
    assert job["env"] == {"MODEL_VERSION": "v2"}
    assert "worker start --pool kubernetes-pool" in capsys.readouterr().out
