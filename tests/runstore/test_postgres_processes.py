"""PostgreSQL as users meet it: flows in their own processes and the installed `distributary` console script,
pointed at a real PostgreSQL 15 server through DISTRIBUTARY_API_DATABASE_CONNECTION_URL; a wrong password is a
clear error and loses no run."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FLOW = r"""
import sys
from distributary import flow, get_run_logger, task
from distributary.artifacts import create_markdown_artifact

@task
def double(x):
    get_run_logger().info("doubling %d", x)
    return 2 * x

@flow(name=sys.argv[1])
def report(n):
    get_run_logger().info("reporting on %d", n)
    create_markdown_artifact("# done", key="pg-report")
    return sum(double.map(range(n)).result())

print(report(5))
"""


def _env(home: Path, url: str) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "PYTHONPATH": os.pathsep.join(sys.path), "DISTRIBUTARY_HOME": str(home),
            "DISTRIBUTARY_API_DATABASE_CONNECTION_URL": url}


def _flow(home: Path, url: str, name: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", FLOW, name], capture_output=True, text=True, timeout=120,
                          env=_env(home, url))


def _cli(home: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    script = shutil.which("distributary", path=str(Path(sys.executable).parent))
    assert script, "the distributary console script is not installed next to the interpreter"
    return subprocess.run([script, *args], capture_output=True, text=True, timeout=120, env=_env(home, url))


@pytest.mark.slow  # a dozen console-script processes
def test_the_console_script_on_postgres(pg_url, tmp_path):
    home = tmp_path / "home"
    out = _flow(home, pg_url, "pg-nightly")
    assert out.returncode == 0 and out.stdout.strip() == "20", out.stderr
    assert not (home / "runs.db").exists()  # everything went to PostgreSQL

    got = _cli(home, pg_url, "flow", "ls", "--output", "json")
    assert got.returncode == 0, got.stderr
    assert [f["name"] for f in json.loads(got.stdout)] == ["pg-nightly"]
    got = _cli(home, pg_url, "flow-run", "ls", "--flow-name", "pg-nightly", "--state", "COMPLETED", "-o", "json")
    runs = json.loads(got.stdout)
    assert got.returncode == 0 and len(runs) == 1
    run_id = runs[0]["id"]
    got = _cli(home, pg_url, "flow-run", "inspect", run_id, "-o", "json")
    assert [s["type"] for s in json.loads(got.stdout)["state_history"]] == ["PENDING", "RUNNING", "COMPLETED"]
    got = _cli(home, pg_url, "task-run", "ls", "--flow-run-id", run_id, "-o", "json")
    tasks = json.loads(got.stdout)
    assert sorted(t["name"] for t in tasks) == [f"double-{i}" for i in range(5)]
    assert {t["state_type"] for t in tasks} == {"COMPLETED"}
    got = _cli(home, pg_url, "task-run", "inspect", tasks[0]["id"], "-o", "json")
    assert json.loads(got.stdout)["flow_run_id"] == run_id
    got = _cli(home, pg_url, "flow-run", "logs", run_id)
    assert got.returncode == 0 and "reporting on 5" in got.stdout and "doubling 3" in got.stdout
    got = _cli(home, pg_url, "artifact", "inspect", "pg-report", "-o", "json")
    assert got.returncode == 0 and "# done" in got.stdout
    assert _cli(home, pg_url, "variable", "set", "region", '"eu-1"').returncode == 0
    got = _cli(home, pg_url, "variable", "get", "region")
    assert got.returncode == 0 and "eu-1" in got.stdout
    assert _cli(home, pg_url, "flow-run", "delete", run_id).returncode == 0
    got = _cli(home, pg_url, "flow-run", "inspect", run_id)
    assert got.returncode == 1 and len(got.stderr.strip().splitlines()) == 1 and "no flow run" in got.stderr


@pytest.fixture
def password_urls(pg_server, pg_url):
    """The URL of a database whose owner logs in with a password, and the same URL with a wrong password."""
    database = pg_url.rsplit("/", 1)[1]
    good = pg_server.password_url(database, f"owner_{database}", "right-secret")
    return good, good.replace(":right-secret@", ":wrong-secret@")


@pytest.mark.slow
def test_a_wrong_password_is_a_clear_error_and_the_runs_are_kept(password_urls, tmp_path):
    good, bad = password_urls
    home = tmp_path / "home"
    user = good.split("//", 1)[1].split(":", 1)[0]

    got = _cli(home, bad, "flow-run", "ls")
    assert got.returncode == 1
    line, = got.stderr.strip().splitlines()
    assert "password authentication failed" in line and user in line
    assert "DISTRIBUTARY_API_DATABASE_CONNECTION_URL" in line and "wrong-secret" not in line

    out = _flow(home, bad, "pg-locked-out")  # the flow runs; its runs are spooled, not lost
    assert out.returncode == 0 and out.stdout.strip() == "20", out.stderr
    assert "password authentication failed" in out.stderr and "wrong-secret" not in out.stderr
    assert "spooled" in out.stderr
    assert list((home / "spool").glob("*.batch"))

    out = _flow(home, good, "pg-fixed")  # the next process with the right password writes the spooled runs
    assert out.returncode == 0, out.stderr
    for name in ("pg-fixed", "pg-locked-out"):
        runs = json.loads(_cli(home, good, "flow-run", "ls", "--flow-name", name, "-o", "json").stdout)
        assert [r["state_type"] for r in runs] == ["COMPLETED"]
    locked_out = runs[0]["id"]
    tasks = json.loads(_cli(home, good, "task-run", "ls", "--flow-run-id", locked_out, "-o", "json").stdout)
    assert len(tasks) == 5 and {t["state_type"] for t in tasks} == {"COMPLETED"}
    assert not list((home / "spool").glob("*.batch"))
