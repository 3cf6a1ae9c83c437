"""The server's read cache (`server/read_cache.py`): a polled filter is answered from memory while the store is
unchanged, and every write, by any process, is seen by the very next request; on the real server over SQLite and
PostgreSQL, with two server processes answering in turn."""
from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from distributary.runstore.batch import Batch, flow_id_for
from distributary.runstore.storage import SqlRunStorage
from distributary.server.app import create_app
from distributary.server.read_cache import ReadCache

POLLS = [("flow_runs/filter", {"limit": 50, "sort": "START_TIME_DESC"}), ("flow_runs/count", {}),
         ("flows/filter", {}), ("task_runs/count", {})]


def _flow_run_row(flow: str, state: str = "COMPLETED") -> tuple[str, dict]:
    rid = str(uuid.uuid4())
    return rid, {"id": rid, "name": f"run-{rid[:6]}", "tags": [], "run_count": 1, "start_time": 1.0e9,
                 "end_time": 1.0e9 + 1, "total_run_time": 1.0, "state_type": state, "state_name": state.title(),
                 "state_message": None, "state_ts": 1.0e9 + 1, "result_ref": None, "created": 1.0e9,
                 "flow_id": flow_id_for(flow), "flow_name": flow, "flow_version": None, "parameters": {},
                 "parent_flow_run_id": None, "parent_task_run_id": None, "expected_start_time": 1.0e9}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_every_write_is_seen_by_the_next_poll_across_server_processes(backend, start_server, request):
    """Two server processes share the store; runs are created through the API (either process may take the
    write) and then polled (either may answer): each count and page shows the run just created."""
    env = {"DISTRIBUTARY_SERVER_WORKERS": "2"}
    if backend == "postgresql":
        pg = request.getfixturevalue("api_pg_server")
        env["DISTRIBUTARY_API_DATABASE_CONNECTION_URL"] = pg.create_database(f"readcache{uuid.uuid4().hex[:8]}")
    srv = start_server(env=env, name="two-workers")
    with srv.http() as http:
        flow = http.post("flows/", json={"name": "polled"}).json()
        created = []
        for i in range(12):
            for _ in range(3):  # polled several times: the later answers may come from the cache
                for path, body in POLLS:
                    assert http.post(path, json=body).status_code == 200
            run = http.post("flow_runs/", json={"flow_id": flow["id"], "name": f"r{i}"}).json()
            created.append(run["id"])
            assert http.post("flow_runs/count", json={}).json() == i + 1
            page = http.post("flow_runs/filter", json={"limit": 50, "sort": "START_TIME_DESC"}).json()
            assert {r["id"] for r in page} == set(created)
            assert [f["name"] for f in http.post("flows/filter", json={}).json()] == ["polled"]
        # a state change (not a new row) is seen too
        http.post(f"flow_runs/{created[0]}/set_state", json={"state": {"type": "RUNNING"}})
        running = http.post("flow_runs/filter", json={"flow_runs": {"state": {"type": {"any_": ["RUNNING"]}}}})
        assert [r["id"] for r in running.json()] == [created[0]]


def test_a_write_straight_into_the_sqlite_file_is_seen_at_once(server):
    """A local flow records into the server's SQLite file directly (not through the API): the server's next
    answer includes it, even for a request it has answered many times before."""
    with server.http() as http:
        for _ in range(5):
            assert http.post("flow_runs/count", json={}).json() == 0
        storage = SqlRunStorage(url=f"sqlite:///{server.home / 'runs.db'}")
        try:
            for i in range(1, 6):
                batch = Batch()
                batch.flows[flow_id_for("local")] = {"id": flow_id_for("local"), "name": "local", "created": 1.0}
                rid, row = _flow_run_row("local", "FAILED")
                batch.flow_runs[rid] = row
                storage.write(batch)
                assert http.post("flow_runs/count", json={}).json() == i
                failed = http.post("flow_runs/filter", json={"flow_runs": {"state": {"type": {"any_": ["FAILED"]}}}})
                assert rid in {r["id"] for r in failed.json()}
        finally:
            storage.engine.dispose()


def _read_cache(app) -> ReadCache:
    layer = app.middleware_stack
    while not isinstance(layer, ReadCache):
        layer = layer.app
    return layer


def test_cached_answers_are_the_answers_the_routes_build(tmp_path, monkeypatch):
    """The same store behind a cached app and an uncached one: byte-identical answers, and the cached app really
    answered the repeats from memory; error answers are never kept."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    storage = SqlRunStorage(url=url)
    batch = Batch()
    for name in ("a", "b"):
        batch.flows[flow_id_for(name)] = {"id": flow_id_for(name), "name": name, "created": 1.0}
        for state in ("COMPLETED", "FAILED", "RUNNING"):
            rid, row = _flow_run_row(name, state)
            batch.flow_runs[rid] = row
    storage.write(batch)
    cached = create_app(url)
    monkeypatch.setenv("DISTRIBUTARY_SERVER_API_READ_CACHE_ENTRIES", "0")
    plain = create_app(url)
    bodies = [("flow_runs/filter", {"limit": 2, "offset": 1, "sort": "START_TIME_DESC"}),
              ("flow_runs/filter", {"flows": {"name": {"any_": ["b"]}}}), ("flow_runs/count", {}),
              ("flows/filter", {"sort": "NAME_DESC"}), ("flows/count", {})]
    with TestClient(cached) as c, TestClient(plain) as p:
        for _ in range(3):
            for path, body in bodies:
                got, want = c.post(f"/api/{path}", json=body), p.post(f"/api/{path}", json=body)
                assert (got.status_code, got.content) == (want.status_code, want.content) == (200, want.content)
        cache = _read_cache(cached)
        assert cache.hits >= 2 * len(bodies)
        bad = {"flow_runs": {"not_a_field": 1}}
        for _ in range(2):
            assert c.post("/api/flow_runs/filter", json=bad).status_code == 422
        assert all(b"not_a_field" not in key[2] for key in cache.entries)
    storage.engine.dispose()


def test_the_cache_answers_nobody_without_credentials(start_server):
    srv = start_server(env={"DISTRIBUTARY_SERVER_API_AUTH_STRING": "admin:pw"})
    with srv.http() as http:
        for _ in range(3):
            assert http.post("flow_runs/count", json={}).json() == 0
    import httpx

    refused = httpx.post(f"{srv.api_url}/flow_runs/count", json={}, timeout=30)
    assert refused.status_code == 401


def test_concurrent_polls_share_version_reads_and_a_write_is_still_seen(tmp_path):
    """Many polls at once share one read of the store's version (not one query each); a write through the API
    is seen by the next poll; a hit still needs credentials; a bad body is still refused with 422."""
    import asyncio
    import base64

    import httpx

    url = f"sqlite:///{tmp_path / 'store.db'}"
    app = create_app(url, auth_string="admin:pw")
    auth = {"Authorization": "Basic " + base64.b64encode(b"admin:pw").decode()}

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t/api", headers=auth) as http:
            flow = (await http.post("/flows/", json={"name": "f"})).json()
            assert (await http.post("/flow_runs/count", json={})).json() == 0
            cache = _read_cache(app)
            reads = cache.version_reads
            answers = await asyncio.gather(*(http.post("/flow_runs/count", json={}) for _ in range(40)))
            assert [a.json() for a in answers] == [0] * 40
            assert cache.version_reads - reads < 10  # shared: far fewer reads than requests
            assert (await http.post("/flow_runs/", json={"flow_id": flow["id"], "name": "r"})).status_code in (200, 201)
            assert (await http.post("/flow_runs/count", json={})).json() == 1
            hits = cache.hits
            page = await http.post("/flow_runs/filter", json={"limit": 5})
            again = await http.post("/flow_runs/filter", json={"limit": 5})
            assert again.content == page.content and cache.hits == hits + 1
            refused = await http.post("/flow_runs/filter", json={"limit": 5}, headers={"Authorization": ""})
            assert refused.status_code == 401
            for _ in range(2):
                bad = await http.post("/flow_runs/filter", json={"flow_runs": {"not_a_field": 1}})
                assert bad.status_code == 422 and "not_a_field" in bad.text

    asyncio.run(scenario())
