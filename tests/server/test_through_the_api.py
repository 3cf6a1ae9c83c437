"""A flow run in a client process with DISTRIBUTARY_API_URL set is recorded through the server (nothing is
written on the client's machine) and reads back the same through the REST routes, get_client() and the CLI; on a
server over SQLite and one over PostgreSQL."""
from __future__ import annotations

import asyncio
import json

import pytest
from api_server import ServerProcess

FLOW = """
from distributary import flow, task, get_run_logger
from distributary.artifacts import create_markdown_artifact, create_table_artifact

@task
def square(x):
    return x * x

@flow(name="api-demo")
def demo(n: int = 40):
    get_run_logger().info("squaring %d numbers", n)
    total = sum(square.map(range(n)).result())
    create_markdown_artifact("# Report\\ntotal computed", key="api-report", description="the report")
    create_table_artifact([{"n": n, "total": total}], key="api-table")
    return total

print(demo())
"""


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def recorded(request, tmp_path_factory):
    """A server (on SQLite, then on PostgreSQL) with the flow above recorded by a client process. The tests
    share it: those that change records come last."""
    env = {}
    if request.param == "postgresql":
        url = request.getfixturevalue("api_pg_server").create_database(f"through_api_{request.param_index}")
        env["DISTRIBUTARY_API_DATABASE_CONNECTION_URL"] = url
    srv = ServerProcess(tmp_path_factory.mktemp(f"through-api-{request.param}"), env=env).start()
    try:
        proc = srv.run_flow(FLOW)
        assert proc.stdout.strip().splitlines()[-1] == str(sum(x * x for x in range(40)))
        yield srv
    finally:
        srv.stop()


def test_nothing_is_written_on_the_client_side(recorded):
    assert not (recorded.client_home / "runs.db").exists()


def test_rest_routes_show_the_run(recorded):
    with recorded.http() as http:
        flows = http.post("flows/filter", json={}).json()
        assert [f["name"] for f in flows] == ["api-demo"]
        runs = http.post("flow_runs/filter", json={"flows": {"name": {"any_": ["api-demo"]}}}).json()
        assert len(runs) == 1 and runs[0]["state"]["type"] == "COMPLETED" and runs[0]["parameters"] == {"n": 40}
        run_id = runs[0]["id"]
        assert http.get(f"flow_runs/{run_id}").json()["name"] == runs[0]["name"]
        tasks = http.post("task_runs/filter", json={"flow_runs": {"id": {"any_": [run_id]}}, "limit": 100}).json()
        assert len(tasks) == 40 and {t["state_type"] for t in tasks} == {"COMPLETED"}
        history = http.get("task_run_states/", params={"task_run_id": tasks[0]["id"]}).json()
        assert [s["type"] for s in history][-1] == "COMPLETED" and len(history) >= 2
        assert http.post("task_runs/count", json={}).json() == 40
        logs = http.post("logs/filter", json={"logs": {"flow_run_id": {"any_": [run_id]}}}).json()
        assert any(lg["message"] == "squaring 40 numbers" for lg in logs)
        latest = http.post("artifacts/latest/filter", json={"artifacts": {"key": {"any_": ["api-table"]}}}).json()
        assert latest[0]["data"] == [{"n": 40, "total": sum(x * x for x in range(40))}]


def test_seed_requests_example_with_the_url_changed(recorded):
    import requests

    API_URL = recorded.api_url  # the only change: the seed's PREFECT_API_URL
    response = requests.post(
        f"{API_URL}/artifacts/filter",
        headers={"Authorization": "Bearer your-api-key"},
        json={"sort": "CREATED_DESC", "limit": 5, "artifacts": {"key": {"exists_": True}}},
        timeout=30,
    )
    got = response.json()
    assert response.status_code == 200
    assert {a["key"] for a in got} == {"api-report", "api-table"}
    assert got[0]["created"] >= got[1]["created"]


@pytest.fixture
def api_env(recorded, monkeypatch):
    """This process as a client of the server (what DISTRIBUTARY_API_URL does)."""
    from distributary.runstore import api_storage

    monkeypatch.setenv("DISTRIBUTARY_API_URL", recorded.api_url)
    monkeypatch.setenv("DISTRIBUTARY_HOME", str(recorded.client_home))
    api_storage._storages.clear()
    yield recorded
    api_storage._storages.clear()


def test_sync_client_reads_through_the_api(api_env):
    from distributary.client.orchestration import get_client
    from distributary.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType

    with get_client(sync_client=True) as client:
        assert client.api_healthcheck() is None
        flow = client.read_flow_by_name("api-demo")
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=["COMPLETED"]))))
        assert [r.flow_id for r in runs] == [flow.id]
        tasks = client.read_task_runs()
        assert len(tasks) == 40
        assert client.read_task_run_states(tasks[0].id)[-1].is_completed()
        assert client.read_flow_run_states(runs[0].id)[-1].is_completed()
        assert any("squaring" in lg.message for lg in client.read_logs())
        assert {a.key for a in client.read_latest_artifacts()} == {"api-report", "api-table"}


def test_async_client_runs_the_seed_list_flows(api_env, capsys):
    from distributary.client.orchestration import get_client

    async def list_flows():  # the seed's example, import changed
        client = get_client()
        flows = await client.read_flows(limit=5)
        for flow in flows:
            print(f"{flow.name}: {flow.id}")

    asyncio.run(list_flows())
    assert capsys.readouterr().out.startswith("api-demo: ")


def test_cli_talks_to_the_server(recorded):
    runs = json.loads(recorded.cli("flow-run", "ls", "--output", "json").stdout)
    assert len(runs) == 1 and runs[0]["state_type"] == "COMPLETED"
    run_id = runs[0]["id"]
    tasks = recorded.cli("task-run", "ls", "--flow-run-id", run_id, "--output", "json", "--limit", "100")
    assert tasks.returncode == 0, tasks.stderr
    assert len(json.loads(tasks.stdout)) == 40
    logs = recorded.cli("flow-run", "logs", run_id)
    assert "squaring 40 numbers" in logs.stdout
    assert "api-report" in recorded.cli("artifact", "ls").stdout
    assert recorded.cli("variable", "set", "color", '"blue"').returncode == 0
    assert recorded.cli("variable", "get", "color").stdout.strip() == '"blue"'
    missing = recorded.cli("flow-run", "inspect", "00000000-0000-0000-0000-000000000000")
    assert missing.returncode == 1 and "no flow run" in missing.stderr
    deleted = recorded.cli("artifact", "delete", "api-report")
    assert deleted.returncode == 0 and "Deleted 1" in deleted.stdout


def test_client_writes_go_to_the_server(api_env):
    from distributary.client.orchestration import get_client
    from distributary.states import Cancelled
    from distributary.variables import Variable

    Variable.set("threshold", {"max": 3})
    assert Variable.get("threshold") == {"max": 3}
    with api_env.http() as http:
        assert http.get("variables/name/threshold").json()["value"] == {"max": 3}
    with pytest.raises(ValueError, match="already exists"):
        Variable.set("threshold", 4)
    Variable.set("threshold", 4, overwrite=True)
    assert Variable.get("threshold") == 4
    assert Variable.unset("threshold") is True and Variable.get("threshold", default="gone") == "gone"

    client = get_client(sync_client=True)
    run = client.read_flow_runs()[0]
    assert client.set_flow_run_state(run.id, Cancelled(message="by hand")).state.type.value == "CANCELLED"
    assert client.read_flow_run(run.id).state_type.value == "CANCELLED"
    client.delete_flow_run(run.id)
    assert client.read_flow_runs() == [] and client.read_task_runs() == []


def test_artifacts_and_logs_from_process_workers_reach_the_server(server):
    server.run_flow("""
        from distributary import flow, task, get_run_logger
        from distributary.artifacts import create_markdown_artifact
        from distributary.task_runners import ProcessPoolTaskRunner

        @task
        def report(i):
            get_run_logger().info("worker %d reporting", i)
            create_markdown_artifact(f"# part {i}", key=f"part-{i}")
            return i

        @flow(name="on-processes", task_runner=ProcessPoolTaskRunner(max_workers=2))
        def on_processes():
            return sum(report.map(range(4)).result())

        if __name__ == "__main__":
            assert on_processes() == 6
    """)
    with server.http() as http:
        keys = {a["key"] for a in http.post("artifacts/latest/filter", json={}).json()}
        logs = [lg["message"] for lg in http.post("logs/filter", json={"limit": 200}).json()]
        done = http.post("task_runs/count", json={"task_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}})
    assert keys == {f"part-{i}" for i in range(4)}
    assert {f"worker {i} reporting" for i in range(4)} <= set(logs)
    assert done.json() == 4
