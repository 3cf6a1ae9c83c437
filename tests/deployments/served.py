"""A real `serve()` process for the deployment tests: a flows file with a flow that completes, crashes or
sleeps, started the way users start one (`python flows.py`), stopped by pid."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from procs import stop_all, wait_for

from distributary.runstore import get_storage

ROOT = Path(__file__).resolve().parents[2]

FLOWS = textwrap.dedent('''
    import os, sys, time
    from pathlib import Path
    from distributary import flow, get_run_logger
    MARKS = Path(os.environ["MARKS"])

    def mark(flow, flow_run, state):
        (MARKS / f"{state.name}-{flow_run.id}").write_text(str(os.getpid()))

    @flow(on_cancellation=[mark], on_crashed=[mark])
    def work(x: int = 1, mode: str = "ok"):
        from distributary.runtime import deployment
        get_run_logger().info("working on %s in %s", x, deployment.name)
        if mode == "crash":
            os._exit(3)
        if mode == "sleep":
            (MARKS / "started").write_text("1")
            time.sleep(120)
        return x * 2

    if __name__ == "__main__":
        import distributary
        kind = sys.argv[1]
        if kind == "interval":
            work.serve("every-second", interval=1, parameters={"x": 5}, tags=["sched"])
        else:
            distributary.serve(work.to_deployment("on-demand", tags=["demo"]))
''')


@pytest.fixture
def served(run_home, tmp_path, monkeypatch):
    """Start `python flows.py KIND` (a serve() process) and stop it at the end by pid."""
    (tmp_path / "flows.py").write_text(FLOWS)
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv("MARKS", str(marks))
    monkeypatch.setenv("DISTRIBUTARY_RUNNER_POLL_INTERVAL", "0.2")
    procs = []

    def start(kind: str, name: str):
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.Popen([sys.executable, "flows.py", kind], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        procs.append(proc)
        st = get_storage()
        wait_for(lambda: _exists(st, f"work/{name}") or proc.poll() is not None, what="the deployment")
        assert proc.poll() is None, proc.communicate()[0]
        return proc

    yield start, marks
    stop_all(procs)


def _exists(storage, name):
    try:
        return storage.read_deployment_by_name(name)
    except LookupError:
        return None
