"""A Ray cluster's head lost mid-flow (issue 15 item 13 on Ray): a real `ray start --head` cluster whose GCS process
is SIGKILLed while a map runs. Ray's own clients retry for `gcs_rpc_server_reconnect_timeout_s` and then kill the
driver's process; the runner must notice well before, end every unfinished run Crashed with one ERROR line, end
the flow run, and leave its process alive. The flow runs in a fresh process (this one may be connected to the
session's Ray already, and Ray allows one connection per process)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from ray_servers import RayHead

REPO = Path(__file__).resolve().parents[2]
# Ray's deadline for the driver (60 s by default), shortened so the test is quick; the runner counts the head
# as lost after a third of it
RAY_RECONNECT_LIMIT = 21

DRIVER = textwrap.dedent("""
    import json, logging, os, sys, time
    from pathlib import Path

    import ray
    from distributary import flow, task, unmapped
    from distributary.runners.ray import RayTaskRunner

    address, marks, killed_file, out_file, linger = sys.argv[1:6]
    errors = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = lambda r: errors.append(r.getMessage())
    logging.getLogger("distributary").addHandler(handler)

    @task
    def work(x: int, d: str) -> int:
        Path(d, f"{x}.{os.getpid()}").touch()
        time.sleep(0.01)
        return x * 2

    futures = []

    @flow(task_runner=RayTaskRunner(address=address, batch_size=10))
    def fan():
        futs = work.map(range(1000), unmapped(marks))
        futures.extend(futs)
        return [f.result() for f in futs]

    state = fan(return_state=True)
    returned = time.time()
    runs = []
    for f in futures:
        value = f.result(raise_on_failure=False) if f.state.is_completed() else None
        runs.append([f.state.type.value, f.state.message, value if isinstance(value, int) else repr(value)])
    report = {"flow": [state.type.value, state.message], "returned": returned, "runs": runs, "errors": errors,
              "ray_connected": ray.is_initialized()}
    Path(out_file).write_text(json.dumps(report))
    # Outlive Ray's own deadline for a lost GCS by a margin: a process still connected would be killed by then.
    killed = float(Path(killed_file).read_text())
    time.sleep(max(0.0, killed + float(linger) - time.time()))
    print("ALIVE", flush=True)
""")


def test_a_lost_ray_head_crashes_the_pending_runs_ends_the_flow_and_the_process_lives(tmp_path):
    marks, killed_file, out_file = tmp_path / "marks", tmp_path / "killed", tmp_path / "report.json"
    marks.mkdir()
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    head = RayHead(tmp_path)
    try:
        env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
               "RAY_gcs_rpc_server_reconnect_timeout_s": str(RAY_RECONNECT_LIMIT)}
        env.pop("RAY_ADDRESS", None)
        linger = RAY_RECONNECT_LIMIT + 5
        driver = subprocess.Popen([sys.executable, str(script), head.address, str(marks), str(killed_file),
                                   str(out_file), str(linger)], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            deadline = time.monotonic() + 90
            while len(os.listdir(marks)) < 300:
                assert driver.poll() is None, driver.stdout.read()[-3000:]  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "the map did not get going"
                time.sleep(0.02)
            gcs = head.gcs_pid()
            assert gcs is not None
            os.kill(gcs, signal.SIGKILL)
            killed_at = time.time()
            killed_file.write_text(repr(killed_at))
            output, _ = driver.communicate(timeout=linger + 60)
        finally:
            if driver.poll() is None:
                os.killpg(driver.pid, signal.SIGKILL)
                driver.wait()
    finally:
        head.stop()
    assert driver.returncode == 0 and "ALIVE" in output, output[-3000:]  # the flow's process outlived Ray's deadline
    report = json.loads(out_file.read_text())
    lost = f"the Ray cluster head was lost (GCS at {head.address} unreachable for "
    flow_type, flow_message = report["flow"]
    assert flow_type in ("FAILED", "CRASHED") and lost in flow_message, report["flow"]
    assert report["returned"] - killed_at < RAY_RECONNECT_LIMIT, "the flow did not end within Ray's own deadline"
    assert not report["ray_connected"]
    runs = report["runs"]
    assert len(runs) == 1000
    completed = [(i, v) for i, (s, _, v) in enumerate(runs) if s == "COMPLETED"]
    crashed = [m for s, m, _ in runs if s == "CRASHED"]
    assert len(completed) + len(crashed) == 1000, {s for s, _, _ in runs}  # nothing left Pending or Running
    assert all(v == 2 * i for i, v in completed)  # values, never an exception object
    assert crashed and all(lost in m for m in crashed), crashed[:3]
    head_lines = [m for m in report["errors"] if lost in m and "ended Crashed" in m]
    assert len(head_lines) == 1 and head_lines[0].startswith(f"{len(crashed)} task run(s)"), report["errors"]
    print(f"head lost: {len(completed)} completed, {len(crashed)} crashed, flow returned "
          f"{report['returned'] - killed_at:.1f} s after the kill")
