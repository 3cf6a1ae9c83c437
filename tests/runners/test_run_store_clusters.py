"""The run store records what ran on a cluster: a `.map()` of 10^4 task runs on real Dask worker processes and
on Ray has every task run in the store exactly once, with its final state and full history, as soon as the flow
returns; the log lines and artifacts the tasks made on the workers are recorded too, linked to their runs."""
from __future__ import annotations

import json
import sys

import cloudpickle
import pytest

from distributary import flow, get_run_logger, task
from distributary.artifacts import create_markdown_artifact
from distributary.futures import wait

cloudpickle.register_pickle_by_value(sys.modules[__name__])

N = 10_000
NOTE_EVERY = 1_000  # the runs that log a line and make an artifact
FAIL_EVERY = 2_500  # the runs that fail


@task
def work(x: int) -> int:
    if x % NOTE_EVERY == 0:
        get_run_logger().info("worker note %d", x)
        create_markdown_artifact(f"# part {x}", key=f"part-{x}")
    if x % FAIL_EVERY == 1:
        raise ValueError(f"bad input {x}")
    return x


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["dask", "ray"])
def test_a_10k_map_on_a_cluster_is_recorded_whole(kind, request, run_home):
    from distributary.runstore.storage import get_storage

    runner = request.getfixturevalue(f"{kind}_runner")

    @flow(task_runner=runner)
    def fan() -> dict:
        futs = work.map(range(N))
        wait(futs)
        return {str(f.task_run.id): f.task_run.state.type.value for f in futs}

    expected = fan()  # the flow's end waits for its records: nothing below polls
    assert len(expected) == N
    storage = get_storage()
    with storage.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT id, name, state_type, state_history FROM task_run").all()
        states = conn.exec_driver_sql("SELECT count(*) FROM run_state").scalar()
    assert len(rows) == N  # no duplicates ...
    assert {r[0] for r in rows} == set(expected)  # ... and no loss
    assert {r[0]: r[2] for r in rows} == expected
    failed = {r[1] for r in rows if r[2] == "FAILED"}
    assert failed == {f"work-{x}" for x in range(N) if x % FAIL_EVERY == 1}
    for _, name, state_type, history in rows:
        names = [h[1] for h in (json.loads(history) if isinstance(history, str) else history)]
        assert names == ["Pending", "Running", "Failed" if state_type == "FAILED" else "Completed"], name
    assert states == 3  # the flow run's own history (task-run histories are a column of their rows)

    by_id = {r[0]: r[1] for r in rows}
    notes = [log for log in storage.read_logs(limit=10 * N) if log.message.startswith("worker note")]
    assert sorted((by_id[str(log.task_run_id)], log.message) for log in notes) == sorted(
        (f"work-{x}", f"worker note {x}") for x in range(0, N, NOTE_EVERY))
    artifacts = storage.read_artifacts(limit=N)
    assert sorted((a.key, by_id[str(a.task_run_id)], a.data) for a in artifacts) == sorted(
        (f"part-{x}", f"work-{x}", f"# part {x}") for x in range(0, N, NOTE_EVERY))
