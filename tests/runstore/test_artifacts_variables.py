"""Artifacts and variables as Prefect 3 users write them."""
from __future__ import annotations

import pytest

from distributary import flow, task, unmapped
from distributary.artifacts import (
    Artifact,
    create_image_artifact,
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from distributary.client.orchestration import get_client
from distributary.engine import transitions
from distributary.errors import ArtifactError
from distributary.variables import Variable, VariableValueError


def test_outside_runs_keyed_versions_and_latest(run_home):
    create_markdown_artifact("# v1", key="report")
    create_markdown_artifact("# v2", key="report", description="second")
    assert Artifact.get("report").data == "# v2"
    client = get_client(sync_client=True)
    assert [a.data for a in client.read_artifacts()] == ["# v2", "# v1"]
    latest = client.read_latest_artifacts()
    assert [(a.key, a.data) for a in latest] == [("report", "# v2")]
    assert Artifact.get("nope") is None


def test_tables_links_images_progress(run_home):
    create_table_artifact({"a": [1, 2], "b": [3, float("nan")]}, key="cols")
    create_table_artifact([[1, 2], [3, 4]], key="grid")
    create_link_artifact("https://x.test/o.csv", "Download", key="link")
    create_image_artifact("https://x.test/p.png", key="img")
    pid = create_progress_artifact(0.0, key="prog")
    update_progress_artifact(pid, 55)
    assert Artifact.get("cols").data == {"a": [1, 2], "b": [3, None]}
    assert Artifact.get("grid").data == [[1, 2], [3, 4]]
    assert Artifact.get("link").data == "[Download](https://x.test/o.csv)"
    assert Artifact.get("img").type == "image"
    assert Artifact.get("prog").data == 55.0


def test_bad_artifacts_are_clear_errors(run_home):
    with pytest.raises(ArtifactError, match="list of dicts"):
        create_table_artifact("not a table")
    with pytest.raises(ArtifactError, match="lists of values"):
        create_table_artifact({"a": 1})
    with pytest.raises(ArtifactError, match="lowercase"):
        create_markdown_artifact("x", key="Bad Key")
    with pytest.raises(ArtifactError, match="0 to 100"):
        create_progress_artifact(150)


def test_artifacts_inside_flows_and_tasks_are_linked_to_their_runs(run_home):
    @task
    def make():
        create_markdown_artifact("from task", key="in-task")

    @flow
    def f():
        create_markdown_artifact("from flow", key="in-flow")
        make()

    f()
    transitions.flush(30)
    in_task, in_flow = Artifact.get("in-task"), Artifact.get("in-flow")
    assert in_task.task_run_id is not None and in_task.flow_run_id == in_flow.flow_run_id is not None
    assert in_flow.task_run_id is None


def test_variables_prefect3_behaviour(run_home):
    assert Variable.get("missing") is None and Variable.get("missing", default=7) == 7
    v = Variable.set("cfg", {"batch": 10, "on": True}, tags=["prod"])
    assert v.name == "cfg" and Variable.get("cfg") == {"batch": 10, "on": True}
    with pytest.raises(ValueError, match="overwrite"):
        Variable.set("cfg", 1)
    Variable.set("cfg", [1, 2], overwrite=True)
    assert Variable.get("cfg") == [1, 2]
    with pytest.raises(VariableValueError, match="not JSON"):
        Variable.set("bad", object())
    assert Variable.unset("cfg") is True and Variable.unset("cfg") is False


def test_artifacts_from_tasks_on_worker_processes_are_recorded(run_home, tmp_path):
    from distributary.task_runners import ProcessPoolTaskRunner

    elsewhere = tmp_path / "worker-home"  # a worker whose own run store is not the driver's (another machine)

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def on_workers():
        return make_on_worker.map(range(4), unmapped(str(elsewhere))).result()

    assert on_workers() == [0, 1, 2, 3]
    got = get_client(sync_client=True).read_artifacts()  # in the driver's store when the flow returns
    assert sorted(a.data for a in got) == ["worker 0", "worker 1", "worker 2", "worker 3"]
    assert all(a.task_run_id is not None for a in got)
    assert not (elsewhere / "runs.db").exists()


@task
def make_on_worker(i: int, home: str) -> int:
    from distributary import settings

    with settings.overlay({"DISTRIBUTARY_HOME": home}):
        create_markdown_artifact(f"worker {i}", key=f"w-{i}")
    return i
