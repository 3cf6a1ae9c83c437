"""A server that goes away mid-flow loses nothing: the flow finishes, the HTTP sink keeps what it could not send
and sends it when the server is back (in the same process, or from the spool in the next one)."""
from __future__ import annotations

import subprocess
import sys
import time

N = 400

SLOW_FLOW = f"""
import time
from distributary import flow, task, get_run_logger

@task
def slow(x):
    time.sleep(0.01)
    return x

@flow(name="survivor")
def survivor():
    get_run_logger().info("started")
    for i in range(8):  # about 8 s, records sent all along
        slow.map(range({N // 8} * i, {N // 8} * (i + 1))).result()
        time.sleep(1.0)
    get_run_logger().info("finished")
    return "ok"

print(survivor())
"""

QUICK_FLOW = """
from distributary import flow, task

@task
def one():
    return 1

@flow(name="after")
def after():
    return one()

print(after())
"""


def _count(server, flow_name: str) -> tuple[int, list[str]]:
    with server.http() as http:
        runs = http.post("flow_runs/filter", json={"flows": {"name": {"any_": [flow_name]}}}).json()
        if not runs:
            return 0, []
        n = http.post("task_runs/count", json={"task_runs": {"flow_run_id": {"any_": [runs[0]["id"]]},
                                                              "state": {"type": {"any_": ["COMPLETED"]}}}}).json()
        return n, [r["state_type"] for r in runs]


def _start_flow(server, code: str) -> subprocess.Popen[str]:
    script = server.workdir / f"flow_{time.monotonic_ns()}.py"
    script.write_text(code)
    return subprocess.Popen([sys.executable, str(script)], env=server.client_env(), cwd=server.workdir,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_records(server, flow_name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while _count(server, flow_name)[1] == [] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _count(server, flow_name)[1], "the flow's first records never reached the server"


def test_server_killed_and_restarted_mid_flow_loses_nothing(server):
    flow = _start_flow(server, SLOW_FLOW)
    try:
        _wait_for_records(server, "survivor")
        server.kill()   # SIGKILL: no goodbye
        time.sleep(1.5)
        assert flow.poll() is None, "the flow should still be running while the server is away"
        server.start()
        out, err = flow.communicate(timeout=120)
    finally:
        if flow.poll() is None:
            flow.kill()
    assert flow.returncode == 0, err
    assert out.strip().splitlines()[-1] == "ok"
    assert _count(server, "survivor") == (N, ["COMPLETED"])
    with server.http() as http:
        messages = [lg["message"] for lg in http.post("logs/filter", json={}).json()]
    assert "started" in messages and "finished" in messages


def test_server_away_at_the_end_of_the_flow_gets_the_records_from_the_spool(server):
    flow = _start_flow(server, SLOW_FLOW)
    try:
        _wait_for_records(server, "survivor")
        server.kill()
        out, err = flow.communicate(timeout=120)
    finally:
        if flow.poll() is None:
            flow.kill()
    assert flow.returncode == 0, err          # the flow finishes although its server is gone
    assert out.strip().splitlines()[-1] == "ok"
    assert "spooled" in err                    # and says where its records are
    assert list((server.client_home / "spool").glob("*.batch"))
    server.start()
    server.run_flow(QUICK_FLOW)                # the next run on this machine sends the spool first
    assert _count(server, "survivor") == (N, ["COMPLETED"])
    assert _count(server, "after") == (1, ["COMPLETED"])
    assert not list((server.client_home / "spool").glob("*.batch"))
