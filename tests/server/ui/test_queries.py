"""The UI's reads (counts by state and by task, pages with their totals, the bucketed timeline, the flow-runs
filters) on both run-store backends: an SQLite file and a real PostgreSQL 15 server."""
from __future__ import annotations

import itertools
import sys
from pathlib import Path

import populate
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "runstore"))
from pg_server import PostgresServer  # noqa: E402

from distributary.runstore.storage import SqlRunStorage  # noqa: E402
from distributary.server.ui import queries as q  # noqa: E402

_ids = itertools.count()
T0 = 1.7e9


@pytest.fixture(scope="module")
def pg_server():
    with PostgresServer() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'runs.db'}"
    else:
        url = request.getfixturevalue("pg_server").create_database(f"ui{next(_ids)}")
    st = SqlRunStorage(url=url)
    yield st
    st.engine.dispose()


def test_task_run_counts_pages_and_timeline(storage):
    (run,) = populate.flow_runs(storage, 1, flow="big", start=T0)
    populate.task_runs(storage, run, 3000, task_keys=("m.extract", "m.load"), start=T0, duration=30.0, fail_every=10)
    counts = q.task_run_counts(storage, run)
    assert counts["total"] == 3000
    assert counts["by_state"] == {"FAILED": 300, "COMPLETED": 2700}  # failures first
    assert [(t["name"], t["total"], t["states"]) for t in counts["by_task"]] == [
        ("extract", 1500, {"COMPLETED": 1500}), ("load", 1500, {"COMPLETED": 1200, "FAILED": 300})]

    rows, total = q.task_run_page(storage, run, limit=100, offset=2950)
    assert total == 3000 and len(rows) == 50
    assert rows[-1].start_time == max(r.start_time for r in q.task_run_page(storage, run, limit=3000)[0])
    rows, total = q.task_run_page(storage, run, state="failed", task_key="m.load", limit=10)
    assert total == 300 and {r.state_type for r in rows} == {"FAILED"}

    tl = q.timeline(storage, run, buckets=60)
    assert tl.total == 3000 and [ln["name"] for ln in tl.lanes] == ["extract", "load"]
    assert all(0 <= i < 60 for ln in tl.lanes for i, _ in ln["cells"])
    first = dict(tl.lanes[0]["cells"])
    assert 0 in first  # the first task run starts the timeline
    # a zoomed window sees only the task runs running in it
    zoom = q.timeline(storage, run, start=T0 + 10, end=T0 + 11, buckets=10)
    assert 0 < zoom.total < 3000


def test_flow_run_filters_pages_and_histogram(storage):
    populate.flow_runs(storage, 30, flow="etl", tags=["nightly"], start=T0, states=("COMPLETED", "FAILED", "COMPLETED"))
    populate.flow_runs(storage, 5, flow="adhoc", start=T0 + 100)
    rows, total = q.flow_run_page(storage, q.FlowRunQuery(), limit=10)
    assert total == 35 and [r.flow_name for r in rows[:5]] == ["adhoc"] * 5  # newest first
    assert q.flow_run_page(storage, q.FlowRunQuery(flow="etl", state="FAILED"))[1] == 10
    assert q.flow_run_page(storage, q.FlowRunQuery(tag="nightly"))[1] == 30
    assert q.flow_run_page(storage, q.FlowRunQuery(tag="night"))[1] == 0  # whole tags only
    assert q.flow_run_page(storage, q.FlowRunQuery(since=T0 + 10, until=T0 + 19))[1] == 10
    hist = q.flow_runs_over_time(storage, T0, T0 + 120, buckets=12)
    assert sum(sum(b.values()) for b in hist.counts) == 35
    assert hist.counts[0] == {"COMPLETED": 7, "FAILED": 3}
    assert [r.state_type for r in q.recent_failures(storage)] == ["FAILED"] * 10
    flows = {f["name"]: f for f in q.flows_with_counts(storage)}
    assert flows["etl"]["runs"] == 30 and flows["etl"]["states"] == [("FAILED", 10), ("COMPLETED", 20)]


def test_run_graph_per_task_run_then_per_task(storage):
    (small, big) = populate.flow_runs(storage, 2, flow="graphed", start=T0)
    ups = populate.task_runs(storage, small, 2, task_keys=("m.load",), start=T0)
    downs = populate.task_runs(storage, small, 3, task_keys=("m.use",), start=T0 + 100, upstream=ups)
    g = q.run_graph(storage, small)
    assert g["mode"] == "task_runs" and g["total"] == 5
    ids = [n["id"] for n in g["nodes"]]
    assert ids == ups + downs  # creation order
    assert sorted(g["edges"]) == sorted([[ids.index(ups[i % 2]), ids.index(d), 1] for i, d in enumerate(downs)])

    # past GRAPH_MAX_RUNS: a node per task, the edge counting the runs that took an input from the other task
    n = q.GRAPH_MAX_RUNS
    ups = populate.task_runs(storage, big, n, task_keys=("m.extract",), start=T0)
    populate.task_runs(storage, big, n // 2, task_keys=("m.load",), start=T0 + 100, upstream=ups)
    populate.task_runs(storage, big, 7, task_keys=("m.alone",), start=T0 + 200)
    g = q.run_graph(storage, big)
    assert g["mode"] == "tasks" and g["total"] == n + n // 2 + 7 and g["hidden"] == 0
    names = [nd["name"] for nd in g["nodes"]]
    assert names == ["extract", "load", "alone"] and g["nodes"][0]["states"] == {"COMPLETED": n}
    assert g["edges"] == [[0, 1, n // 2]]
