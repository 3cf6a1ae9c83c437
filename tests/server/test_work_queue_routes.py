"""Work queues through the REST API of a real server, on Prefect's paths and shapes: a pool's `default_queue_id`,
`/work_pools/{pool}/queues` (create, filter, read, PATCH, DELETE), `/work_queues/{id}`, and
`get_scheduled_flow_runs` honouring `work_queue_names`; the client's Prefect-named methods over HTTP."""
from __future__ import annotations

import pytest

from distributary.client.orchestration import get_client
from distributary.errors import ConfigurationError, ObjectNotFound


def test_queue_routes_in_prefects_shapes(server, api):
    api.create_work_pool("local")
    with server.http() as http:
        pool = http.get("work_pools/local").json()
        default = http.get("work_pools/local/queues/default").json()
        assert pool["default_queue_id"] == default["id"] and default["work_pool_id"] == pool["id"]
        made = http.post("work_pools/local/queues", json={"name": "gpu", "priority": 1, "concurrency_limit": 3,
                                                          "description": "big jobs"})
        assert made.status_code == 201
        q = made.json()
        assert {k: q[k] for k in ("name", "priority", "concurrency_limit", "is_paused", "work_pool_name",
                                  "status")} == {"name": "gpu", "priority": 1, "concurrency_limit": 3,
                                                 "is_paused": False, "work_pool_name": "local", "status": "NOT_READY"}
        assert http.post("work_pools/local/queues", json={"name": "gpu"}).status_code == 409
        listed = http.post("work_pools/local/queues/filter", json={}).json()
        assert [(x["name"], x["priority"]) for x in listed] == [("gpu", 1), ("default", 2)]
        only = http.post("work_pools/local/queues/filter", json={"work_queues": {"name": {"any_": ["default"]}}})
        assert [x["name"] for x in only.json()] == ["default"]
        assert http.patch("work_pools/local/queues/gpu", json={"is_paused": True}).status_code == 204
        assert http.get(f"work_queues/{q['id']}").json()["status"] == "PAUSED"
        assert http.patch(f"work_queues/{q['id']}", json={"concurrency_limit": None}).status_code == 204
        assert http.get("work_pools/local/queues/gpu").json()["concurrency_limit"] is None
        refused = http.delete(f"work_queues/{default['id']}")
        assert refused.status_code == 422 and "default queue" in refused.text
        assert http.delete("work_pools/local/queues/gpu").status_code == 204
        missing = http.get("work_pools/local/queues/gpu")
        assert missing.status_code == 404 and "work-queue create gpu --pool local" in missing.text


def test_scheduled_runs_by_queue_names_and_claims_over_http(server, api):
    api.create_work_pool("local")
    api.create_work_queue("local", "urgent", priority=1)
    urgent = api.create_deployment(flow_name="work", name="urgent", work_pool_name="local", work_queue_name="urgent")
    plain = api.create_deployment(flow_name="work", name="plain", work_pool_name="local")
    runs = {"urgent": api.create_flow_run_from_deployment(urgent.id),
            "plain": api.create_flow_run_from_deployment(plain.id)}
    assert runs["urgent"].work_queue_name == "urgent" and runs["plain"].work_queue_name == "default"
    with server.http() as http:
        got = http.post("work_pools/local/get_scheduled_flow_runs", json={"work_queue_names": ["default"]}).json()
        assert [g["flow_run"]["id"] for g in got] == [str(runs["plain"].id)]
        assert got[0]["work_queue_id"] == str(runs["plain"].work_queue_id)
        assert got[0]["flow_run"]["work_queue_name"] == "default"
        every = http.post("work_pools/local/get_scheduled_flow_runs", json={}).json()
        assert [g["flow_run"]["id"] for g in every] == [str(runs["urgent"].id), str(runs["plain"].id)]
    claimed = api.claim_pool_runs("local", "w1", 5, work_queue_names=["urgent"])
    assert [r.id for r in claimed] == [runs["urgent"].id] and claimed[0].state_type == "PENDING"


@pytest.mark.parametrize("over", ["http", "sql"])
def test_client_work_queue_methods(server, over, monkeypatch):
    url = None if over == "http" else f"sqlite:///{server.home / 'runs.db'}"
    monkeypatch.setenv("DISTRIBUTARY_API_URL", server.api_url)  # the client over HTTP, unless given a database
    with get_client(sync_client=True, url=url) as client:
        assert type(client.storage).__name__ == ("ApiRunStorage" if over == "http" else "SqlRunStorage")
        client.storage.create_work_pool("pool-" + over)
        q = client.create_work_queue("fast", priority=1, concurrency_limit=2, work_pool_name="pool-" + over)
        assert client.read_work_queue_by_name("fast", work_pool_name="pool-" + over).id == q.id
        client.update_work_queue(q.id, is_paused=True, priority=3)
        assert client.read_work_queue(q.id).is_paused
        assert [x.name for x in client.read_work_queues(work_pool_name="pool-" + over)] == ["default", "fast"]
        with pytest.raises(ConfigurationError, match="work_pool_name="):
            client.create_work_queue("nowhere")
        client.delete_work_queue_by_id(q.id)
        with pytest.raises(ObjectNotFound):
            client.read_work_queue(q.id)


def test_async_client_creates_and_reads_queues(server, api, monkeypatch):
    import asyncio

    api.create_work_pool("apool")
    monkeypatch.setenv("DISTRIBUTARY_API_URL", server.api_url)

    async def main():
        async with get_client() as client:
            q = await client.create_work_queue("a", work_pool_name="apool")
            return q, await client.read_work_queue_by_name("a", work_pool_name="apool")

    made, read = asyncio.run(main())
    assert made.id == read.id and read.work_pool_name == "apool"
