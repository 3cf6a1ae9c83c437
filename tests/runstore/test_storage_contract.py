"""One contract suite for the run store, run against SQLite on disk and a real PostgreSQL 15: what the sink
writes from run events is what the storage reads back."""
from __future__ import annotations

import uuid

import pytest
from events import artifact_event, flow_with_tasks

from distributary.errors import ObjectNotFound
from distributary.runstore.sink import RunStoreSink
from distributary.schemas import filters as F
from distributary.schemas import sorting as S
from distributary.states import Failed


def record(storage, events, tmp_path) -> RunStoreSink:
    sink = RunStoreSink(storage=storage, spool_dir=tmp_path / "spool")
    sink.handle(events)
    assert sink.flush(30)
    sink.close()
    return sink


class TestRunStorage:
    def test_flow_run_and_task_runs_with_full_history(self, storage, tmp_path):
        fr, trs, ev = flow_with_tasks(50, fail_every=10)
        record(storage, ev, tmp_path)
        got = storage.read_flow_run(fr.id)
        assert got.name == fr.name and got.state_type == "COMPLETED" and got.tags == ["nightly"]
        assert got.parameters == {"n": 3} and got.start_time is not None and got.total_run_time.total_seconds() >= 0
        assert [s.type for s in storage.read_states(fr.id)] == ["PENDING", "RUNNING", "COMPLETED"]
        runs = storage.read_task_runs(task_run_filter=F.TaskRunFilter(
            flow_run_id=F.TaskRunFilterFlowRunId(any_=[fr.id])))
        assert len(runs) == 50
        by_id = {r.id: r for r in runs}
        assert by_id[trs[10].id].state_type == "FAILED" and by_id[trs[10].id].state.message == "boom 10"
        assert by_id[trs[3].id].dynamic_key == "3" and by_id[trs[3].id].task_key == "mod.add"
        assert [s.type for s in storage.read_states(trs[3].id)] == ["PENDING", "RUNNING", "COMPLETED"]
        assert storage.read_flow_by_name("etl").id == got.flow_id

    def test_filters_sorting_and_pagination(self, storage, tmp_path):
        ev = []
        runs = []
        for name in ("a", "b", "b"):
            fr, _, e = flow_with_tasks(2, flow_name=name)
            runs.append(fr)
            ev += e
        record(storage, ev, tmp_path)
        assert {f.name for f in storage.read_flows()} == {"a", "b"}
        only_b = storage.read_flow_runs(flow_filter=F.FlowFilter(name=F.FlowFilterName(any_=["b"])))
        assert {r.id for r in only_b} == {runs[1].id, runs[2].id}
        page = storage.read_flow_runs(sort=S.FlowRunSort.START_TIME_ASC, limit=2, offset=1)
        assert [r.id for r in page] == [runs[1].id, runs[2].id]
        failed = storage.read_flow_runs(flow_run_filter=F.FlowRunFilter(
            state=F.FlowRunFilterState(type=F.FlowRunFilterStateType(any_=["FAILED"]))))
        assert failed == []
        tagged = storage.read_flow_runs(flow_run_filter=F.FlowRunFilter(tags=F.FlowRunFilterTags(all_=["nightly"])))
        assert len(tagged) == 3

    def test_logs_of_flow_and_task_runs(self, storage, tmp_path):
        fr, trs, ev = flow_with_tasks(3)
        record(storage, ev, tmp_path)
        logs = storage.read_logs(F.LogFilter(flow_run_id=F.LogFilterFlowRunId(any_=[fr.id])))
        assert [(rec.message, rec.task_run_id) for rec in logs] == [("hello", trs[0].id), ("flow says", None)]
        errors = storage.read_logs(F.LogFilter(level=F.LogFilterLevel(ge_=40)))
        assert [rec.message for rec in errors] == ["flow says"]

    def test_keyed_artifacts_keep_every_version(self, storage, tmp_path):
        record(storage, [artifact_event("report", "# v1", created=1000.0), artifact_event("report", "# v2",
                         created=2000.0), artifact_event(None, "anon", created=1500.0)], tmp_path)
        versions = storage.read_artifacts(F.ArtifactFilter(key=F.ArtifactFilterKey(any_=["report"])))
        assert [a.data for a in versions] == ["# v2", "# v1"]
        latest = storage.read_artifacts(latest=True)
        assert [(a.key, a.data) for a in latest] == [("report", "# v2")]
        assert storage.delete_artifacts("report") == 2
        assert storage.read_artifacts(F.ArtifactFilter(key=F.ArtifactFilterKey(exists_=True))) == []

    def test_variables(self, storage):
        storage.set_variable("threshold", {"x": [1, 2]}, tags=["prod"])
        assert storage.read_variable_by_name("threshold").value == {"x": [1, 2]}
        with pytest.raises(ValueError, match="overwrite"):
            storage.set_variable("threshold", 3)
        assert storage.set_variable("threshold", 3, overwrite=True).value == 3
        assert storage.delete_variable_by_name("threshold") is True
        assert storage.read_variable_by_name("threshold") is None

    def test_delete_flow_run_and_set_state(self, storage, tmp_path):
        fr, trs, ev = flow_with_tasks(4)
        record(storage, ev, tmp_path)
        storage.set_flow_run_state(fr.id, Failed(message="marked by hand"))
        assert storage.read_flow_run(fr.id).state.message == "marked by hand"
        storage.delete_flow_run(fr.id)
        with pytest.raises(ObjectNotFound):
            storage.read_flow_run(fr.id)
        assert storage.read_task_runs(task_run_filter=F.TaskRunFilter(
            flow_run_id=F.TaskRunFilterFlowRunId(any_=[fr.id]))) == []
        assert storage.read_states(trs[0].id) == []
        with pytest.raises(ObjectNotFound):
            storage.delete_flow_run(uuid.uuid4())

    def test_result_references_not_bytes(self, storage, tmp_path):
        from distributary.results import resolve_store

        ref = resolve_store(f"file://{tmp_path}/results").write("k1", b"x" * 10_000, "pickle")
        fr, trs, ev = flow_with_tasks(1)
        trs[0].state.result_ref = ref
        record(storage, ev, tmp_path)
        got = storage.read_task_run(trs[0].id)
        assert got.state.result_ref["key"] == "k1" and "x" * 100 not in str(got.state.result_ref)

    def test_many_task_runs_in_a_few_statements(self, storage, tmp_path):
        fr, trs, ev = flow_with_tasks(5000)
        record(storage, ev, tmp_path)
        assert storage.count_task_runs(F.TaskRunFilter(flow_run_id=F.TaskRunFilterFlowRunId(any_=[fr.id]))) == 5000
        assert storage.count_states() == 3 * 5000 + 3
