"""flow.serve() end to end on the embedded run store: a real `serve()` process (a script, as users run it) picks
up runs from run_deployment and from its schedule, runs each in a subprocess, and handles crashes,
cancellation and SIGTERM."""
from __future__ import annotations

import signal
import sys

from procs import wait_for
from served import FLOWS

from distributary.deployments import run_deployment
from distributary.runstore import get_storage


def test_run_deployment_waits_for_the_served_run(served):
    start, _ = served
    proc = start("on-demand", "on-demand")
    run = run_deployment("work/on-demand", parameters={"x": 21}, timeout=120)
    assert run.state.is_completed(), run.state
    st = get_storage()
    assert run.deployment_id == st.read_deployment_by_name("work/on-demand").id and run.tags == ["demo"]
    assert [s.type for s in st.read_states(run.id)][:1] == ["SCHEDULED"]
    from distributary.schemas import filters as F

    logs = st.read_logs(F.LogFilter(flow_run_id=F.LogFilterFlowRunId(any_=[run.id])))
    assert any("working on 21 in on-demand" in rec.message for rec in logs)  # runtime.deployment.name
    quick = run_deployment("work/on-demand", timeout=0)
    assert quick.state.type == "SCHEDULED"  # returned at once
    assert run_deployment("work/on-demand", idempotency_key="once", timeout=0).id == run_deployment(
        "work/on-demand", idempotency_key="once", timeout=0).id
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "working on 21" in out  # the run's logs are streamed to the serve() console


def test_scheduled_runs_run_each_once(served):
    start, _ = served
    proc = start("interval", "every-second")
    st = get_storage()
    done = wait_for(lambda: [r for r in st.read_flow_runs() if r.state_type == "COMPLETED"] if len(
        [r for r in st.read_flow_runs() if r.state_type == "COMPLETED"]) >= 3 else None, what="3 scheduled runs")
    assert [(r.auto_scheduled, r.parameters.get("x"), r.tags) for r in done] == [(True, 5, ["sched"])] * len(done)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    runs = st.read_flow_runs()
    assert not [r for r in runs if r.state_type in ("RUNNING", "PENDING")]  # none left running
    times = [r.expected_start_time for r in runs if r.state_type == "COMPLETED"]
    assert len(times) == len(set(times))  # each scheduled time ran once
    dep = st.read_deployment_by_name("work/every-second")
    assert dep.paused and not [r for r in runs if r.state_type == "SCHEDULED"]  # paused on shutdown


def test_a_crashed_run_process_ends_crashed_with_its_exit_code(served):
    start, marks = served
    start("on-demand", "on-demand")
    run = run_deployment("work/on-demand", parameters={"mode": "crash"}, timeout=120)
    assert run.state.is_crashed() and "exited with code 3" in run.state.message
    wait_for(lambda: (marks / f"Crashed-{run.id}").exists(), what="the on_crashed hook")


def test_cancel_stops_the_run_and_runs_on_cancellation(served, capsys):
    from distributary.cli import main

    start, marks = served
    start("on-demand", "on-demand")
    run = run_deployment("work/on-demand", parameters={"mode": "sleep"}, timeout=0)
    st = get_storage()
    wait_for(lambda: (marks / "started").exists(), what="the run to start")
    assert main(["flow-run", "cancel", str(run.id)]) == 0
    final = wait_for(lambda: (r := st.read_flow_run(run.id)).state_type == "CANCELLED" and r, what="Cancelled")
    assert [s.type for s in st.read_states(run.id)][-2:] == ["CANCELLING", "CANCELLED"]
    assert final.state.is_cancelled()
    hook_pid = wait_for(lambda: (marks / f"Cancelled-{run.id}").exists() and (marks / f"Cancelled-{run.id}"),
                        what="the on_cancellation hook").read_text()
    assert hook_pid  # ran in the serve() process
    assert main(["flow-run", "cancel", str(run.id)]) == 1  # already finished: a clear error


def test_sigterm_stops_in_flight_runs_and_marks_them(served):
    start, marks = served
    proc = start("on-demand", "on-demand")
    run = run_deployment("work/on-demand", parameters={"mode": "sleep"}, timeout=0)
    wait_for(lambda: (marks / "started").exists(), what="the run to start")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 0
    got = get_storage().read_flow_run(run.id)
    assert got.state_type == "CANCELLED" and "stopped" in got.state.message


def test_cancelling_a_run_that_has_not_started_cancels_it_at_once(run_home, tmp_path, monkeypatch):
    (tmp_path / "flows.py").write_text(FLOWS)
    monkeypatch.setenv("MARKS", str(tmp_path))
    sys.path.insert(0, str(tmp_path))
    try:
        from distributary.deployments.definition import load_flow

        work = load_flow("flows.py:work", str(tmp_path))
        work.to_deployment("later").apply()
    finally:
        sys.path.remove(str(tmp_path))
    run = run_deployment("work/later", timeout=0)
    st = get_storage()
    assert st.cancel_flow_run(run.id).state_type == "CANCELLED"


def test_a_serve_process_killed_with_sigkill_leaves_no_run_running(served, monkeypatch):
    start, marks = served
    doomed = start("on-demand", "on-demand")
    run = run_deployment("work/on-demand", parameters={"mode": "sleep"}, timeout=0)
    wait_for(lambda: (marks / "started").exists(), what="the run to start")
    doomed.kill()  # no cleanup at all; the run's process dies with it
    doomed.wait(30)
    monkeypatch.setenv("DISTRIBUTARY_WORKER_HEARTBEAT_TIMEOUT", "3")
    start("on-demand", "on-demand")  # the next serve() notices the missing heartbeats
    st = get_storage()
    final = wait_for(lambda: (r := st.read_flow_run(run.id)).state_type == "CRASHED" and r, timeout=120,
                     what="Crashed")
    assert "serve() process" in final.state.message
