"""Concurrency limits through a real server: Prefect's `/api/v2/concurrency_limits/...` and
`/api/concurrency_limits/...` routes and their JSON shapes, and `concurrency()` in client processes that only know
DISTRIBUTARY_API_URL, contending for one limit (never more holders than the limit), on SQLite and PostgreSQL."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import pytest
from procs import CONCURRENCY_CONTENDER, max_overlap


def test_v2_routes(server):
    with server.http() as http:
        r = http.post("v2/concurrency_limits/", json={"name": "db", "limit": 1})
        assert r.status_code == 201
        made = r.json()
        assert {k: made[k] for k in ("name", "limit", "active", "active_slots", "slot_decay_per_second")} == {
            "name": "db", "limit": 1, "active": True, "active_slots": 0, "slot_decay_per_second": 0.0}
        assert http.post("v2/concurrency_limits/", json={"name": "db", "limit": 1}).status_code == 409
        assert http.get(f"v2/concurrency_limits/{made['id']}").json()["name"] == "db"
        assert [g["name"] for g in http.post("v2/concurrency_limits/filter", json={}).json()] == ["db"]

        got = http.post("v2/concurrency_limits/increment-with-lease",
                        json={"names": ["db"], "slots": 1, "mode": "concurrency", "lease_duration": 60})
        assert got.status_code == 200 and got.json()["limits"] == [{"id": made["id"], "name": "db", "limit": 1}]
        lease = got.json()["lease_id"]
        full = http.post("v2/concurrency_limits/increment-with-lease", json={"names": ["db"], "slots": 1})
        assert full.status_code == 423 and float(full.headers["Retry-After"]) > 0
        assert http.get("v2/concurrency_limits/db").json()["active_slots"] == 1
        assert http.post(f"v2/concurrency_limits/leases/{lease}/renew", json={"lease_duration": 60}).status_code == 204
        assert http.post(f"v2/concurrency_limits/leases/{uuid.uuid4()}/renew", json={}).status_code == 404
        assert http.post("v2/concurrency_limits/decrement-with-lease", json={"lease_id": lease}).status_code == 204
        assert http.get("v2/concurrency_limits/db").json()["active_slots"] == 0

        assert http.post("v2/concurrency_limits/increment", json={"names": ["db"], "slots": 2}).status_code == 422
        assert http.post("v2/concurrency_limits/increment",
                         json={"names": ["db"], "slots": 1, "mode": "rate_limit"}).status_code == 422  # no decay
        assert http.patch("v2/concurrency_limits/db", json={"slot_decay_per_second": 5.0, "limit": 2}).status_code == 204
        taken = http.post("v2/concurrency_limits/increment", json={"names": ["db"], "slots": 1, "mode": "rate_limit"})
        assert taken.status_code == 200 and taken.json()[0]["limit"] == 2
        assert http.post("v2/concurrency_limits/decrement", json={"names": ["db"], "slots": 1}).status_code == 200
        assert http.delete("v2/concurrency_limits/db").status_code == 204
        assert http.get("v2/concurrency_limits/db").status_code == 404


def test_tag_routes(server):
    run = str(uuid.uuid4())
    with server.http() as http:
        r = http.post("concurrency_limits/", json={"tag": "database", "concurrency_limit": 1})
        assert r.status_code == 201 and (r.json()["tag"], r.json()["concurrency_limit"]) == ("database", 1)
        assert http.post("concurrency_limits/", json={"tag": "database", "concurrency_limit": 2}).status_code == 200
        assert http.post("concurrency_limits/increment", json={"names": ["database"], "task_run_id": run}
                         ).status_code == 200
        got = http.get("concurrency_limits/tag/database").json()
        assert got["concurrency_limit"] == 2 and got["active_slots"] == [run]
        assert http.get(f"concurrency_limits/{got['id']}").json()["tag"] == "database"
        assert [c["tag"] for c in http.post("concurrency_limits/filter", json={}).json()] == ["database"]
        assert http.post("concurrency_limits/decrement", json={"names": ["database"], "task_run_id": run}
                         ).status_code == 200
        assert http.get("concurrency_limits/tag/database").json()["active_slots"] == []
        assert http.post("concurrency_limits/tag/database/reset", json={}).status_code == 200
        assert http.delete("concurrency_limits/tag/database").status_code == 200
        assert http.get("concurrency_limits/tag/database").status_code == 404


def test_cli_over_the_api(server):
    assert server.cli("gcl", "create", "api", "--limit", "3").returncode == 0
    out = server.cli("gcl", "inspect", "api", "-o", "json")
    assert out.returncode == 0 and json.loads(out.stdout)["limit"] == 3
    assert server.cli("concurrency-limit", "create", "etl", "2").returncode == 0
    assert [g["name"] for g in json.loads(server.cli("gcl", "ls", "-o", "json").stdout)] == ["api", "tag:etl"]


@pytest.mark.slow
def test_client_processes_contending_through_the_api_never_exceed_the_limit(any_server, tmp_path):
    with any_server.http() as http:
        assert http.post("v2/concurrency_limits/", json={"name": "db", "limit": 2}).status_code == 201
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENCY_CONTENDER, str(go), str(tmp_path / f"out{i}"), "4"],
                              env=any_server.client_env(), cwd=tmp_path) for i in range(4)]
    time.sleep(1.0)
    go.touch()
    for p in procs:
        assert p.wait(timeout=180) == 0
    spans = [s for i in range(4) for s in json.loads((tmp_path / f"out{i}").read_text())]
    assert len(spans) == 16 and max_overlap(spans) == 2
    with any_server.http() as http:
        assert http.get("v2/concurrency_limits/db").json()["active_slots"] == 0
