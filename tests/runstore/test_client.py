"""`get_client()` reads what the runs recorded, with Prefect's method names, filters, sorting and pagination."""
from __future__ import annotations

import asyncio
import uuid

import pytest
from events import flow_with_tasks

from distributary.client.orchestration import get_client
from distributary.client.schemas.actions import VariableCreate
from distributary.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    LogFilter,
    LogFilterFlowRunId,
)
from distributary.client.schemas.objects import FlowRun
from distributary.client.schemas.sorting import FlowRunSort
from distributary.engine import transitions
from distributary.exceptions import ObjectNotFound
from distributary.runstore import ensure_sink
from distributary.states import Cancelled


@pytest.fixture
def recorded(run_home):
    sink = ensure_sink()
    runs = []
    for name in ("ingest", "ingest", "report"):
        fr, trs, ev = flow_with_tasks(3, flow_name=name)
        sink.handle(ev)
        runs.append((fr, trs))
    assert transitions.flush(30)
    return runs


def test_async_client_without_and_with_context_manager(recorded):
    async def main():
        client = get_client()
        flows = await client.read_flows(limit=5)
        async with get_client() as c2:
            runs = await c2.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["ingest"])),
                                           sort=FlowRunSort.START_TIME_ASC)
        return flows, runs

    flows, runs = asyncio.run(main())
    assert {f.name for f in flows} == {"ingest", "report"}
    assert [r.id for r in runs] == [recorded[0][0].id, recorded[1][0].id] and isinstance(runs[0], FlowRun)


def test_sync_client_reads_runs_task_runs_logs(recorded):
    fr, trs = recorded[2]
    with get_client(sync_client=True) as client:
        got = client.read_flow_run(fr.id)
        assert got.name == fr.name and got.state.is_completed()
        assert client.read_flow(got.flow_id).name == "report"
        assert client.read_flow_by_name("report").id == got.flow_id
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [fr.id]}))
        assert {t.id for t in task_runs} == {t.id for t in trs}
        assert client.read_task_run(trs[1].id).name == "add-1"
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[fr.id])))
        assert [rec.message for rec in logs] == ["hello", "flow says"]
        assert len(client.read_flow_runs(limit=2)) == 2 and len(client.read_flow_runs(limit=2, offset=2)) == 1
        with pytest.raises(ObjectNotFound):
            client.read_flow_run(uuid.uuid4())


def test_set_state_and_delete(recorded):
    fr, _ = recorded[0]
    client = get_client(sync_client=True)
    result = client.set_flow_run_state(fr.id, Cancelled(message="by hand"))
    assert result.state.type == "CANCELLED"
    cancelled = client.read_flow_runs(flow_run_filter=FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=["CANCELLED"]))))
    assert [r.id for r in cancelled] == [fr.id]
    assert [s.type for s in client.read_flow_run_states(fr.id)][-1] == "CANCELLED"
    client.delete_flow_run(fr.id)
    with pytest.raises(ObjectNotFound):
        client.read_flow_run(fr.id)


def test_variables_through_the_client(run_home):
    async def main():
        async with get_client() as client:
            await client.create_variable(VariableCreate(name="region", value="eu", tags=["x"]))
            v = await client.read_variable_by_name("region")
            await client.delete_variable_by_name("region")
            return v, await client.read_variable_by_name("region")

    v, gone = asyncio.run(main())
    assert v.value == "eu" and v.tags == ["x"] and gone is None
