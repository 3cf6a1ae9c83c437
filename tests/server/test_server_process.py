"""The server as a process: `distributary server start` answers, stops gracefully on SIGTERM, and
`distributary server database upgrade/reset` manage its database."""
from __future__ import annotations

import subprocess
import sys

import httpx
import pytest
from api_server import REPO, base_env


def test_health_and_versions(server):
    with server.http() as http:
        assert http.get("health").json() is True
        # Prefect's client refuses a server whose major version differs from its own
        assert http.get("admin/version").json().split(".")[0] == "3"
        assert http.get("version").json() == http.get("admin/version").json()


def test_openapi_docs_list_the_routes(server):
    with server.http() as http:
        assert http.get(f"{server.url}/docs").status_code == 200
        paths = http.get("openapi.json").json()["paths"]
    assert "/api/health" in paths and "/api/admin/version" in paths


def test_sigterm_stops_the_server_gracefully(server):
    assert server.stop() == 0
    assert "Traceback" not in server.log()


def _cli(home, *args):
    env = {**base_env(), "DISTRIBUTARY_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "distributary", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_database_upgrade_creates_and_reset_empties_the_store(tmp_path):
    home = tmp_path / "home"
    up = _cli(home, "server", "database", "upgrade")
    assert up.returncode == 0, up.stderr
    assert (home / "runs.db").exists() and "schema revision" in up.stdout
    assert _cli(home, "variable", "set", "answer", "42").returncode == 0
    assert _cli(home, "variable", "get", "answer").stdout.strip() == "42"
    reset = _cli(home, "server", "database", "reset", "--yes")
    assert reset.returncode == 0, reset.stderr
    assert _cli(home, "variable", "get", "answer").returncode == 1


def test_database_upgrade_and_reset_on_postgresql(tmp_path, api_pg_server):
    url = api_pg_server.create_database("reset_me")
    env = {**base_env(), "DISTRIBUTARY_HOME": str(tmp_path / "home"), "DISTRIBUTARY_API_DATABASE_CONNECTION_URL": url}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "distributary", *args], env=env, cwd=REPO, capture_output=True,
                              text=True, timeout=120)

    assert cli("server", "database", "upgrade").returncode == 0
    assert cli("variable", "set", "answer", "42").returncode == 0
    reset = cli("server", "database", "reset", "--yes")
    assert reset.returncode == 0, reset.stderr
    assert cli("variable", "get", "answer").returncode == 1
    assert cli("variable", "set", "answer", "43").returncode == 0  # the schema is back


MANY_WRITERS = """
import sys
from distributary import flow, task
from distributary.task_runners import ThreadPoolTaskRunner

@task
def inc(x):
    return x + 1

@flow(name="multi-worker", task_runner=ThreadPoolTaskRunner(max_workers=4))
def mapped(n):
    return sum(inc.map(range(n)).result())

assert mapped(int(sys.argv[1]) if len(sys.argv) > 1 else 300) == sum(range(1, 301))
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_several_worker_processes_share_one_store(start_server, backend, request):
    """`--workers 2`: requests land on either process; the store (SQLite in WAL mode, or PostgreSQL) is one, so
    what one process wrote the other reads, and a SIGTERM stops them all."""
    env = {"DISTRIBUTARY_SERVER_WORKERS": "2"}
    if backend == "postgresql":
        env["DISTRIBUTARY_API_DATABASE_CONNECTION_URL"] = request.getfixturevalue(
            "api_pg_server").create_database("multiworker")
    srv = start_server(env=env)
    assert "2 worker processes" in srv.log()
    procs = [subprocess.Popen([sys.executable, "-c", MANY_WRITERS], env=srv.client_env(), cwd=srv.workdir,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    with srv.http() as http:
        while any(p.poll() is None for p in procs):  # reads on fresh connections, while both flows write
            assert http.post("flow_runs/filter", json={"limit": 5}, headers={"Connection": "close"}).status_code == 200
        for p in procs:
            assert p.wait() == 0, p.stderr.read()[-2000:]
        for _ in range(10):  # each request may reach either process: every one sees the same store
            fresh = httpx.post(f"{srv.api_url}/task_runs/count", json={}, headers={"Connection": "close"})
            assert fresh.json() == 600
        runs = http.post("flow_runs/filter", json={}).json()
        assert [r["state_type"] for r in runs] == ["COMPLETED", "COMPLETED"]
    assert srv.stop() == 0
    assert "Traceback" not in srv.log()
