"""A .map()'s task runs decoded by column (`compact.task_run_blocks`) are stored exactly as the row-by-row path
stores them, on both backends, whatever mix of shapes a chunk holds."""
from __future__ import annotations

import time
import uuid

import sqlalchemy as sa

from distributary import states as S
from distributary.results.refs import ResultRef
from distributary.runs import TaskRun, batch_run_ids
from distributary.runstore.batch import Batch
from distributary.runstore.compact import TASK_RUN_COLUMNS, Json, compact_task_runs, task_run_blocks, task_run_values


def _runs(n: int = 300):
    """A map's runs (consecutive int ids), most completed, with the other shapes a delivery meets in between:
    runs still running, failed runs with a message, a persisted result, a retried run, a named run, a UUID id."""
    fr = uuid.uuid4()
    ids = batch_run_ids(n)
    items = []
    for i in range(n):
        tr = TaskRun(ids[i], None, "inc", "mod.inc", fr, {"x": i}, frozenset({"t"}), S.Pending(), dynamic_key=i)
        tr.start_ts, tr.run_count = time.time(), 1
        tr.state_history.append(S.Running())
        if i % 97 == 5:  # still running when its news was delivered
            tr.state = tr.state_history[-1]
            items.append((tr, tr.state))
            continue
        tr.end_ts = time.time()
        if 40 <= i < 52:
            final = S.Failed(message=f"boom {i}")
        elif i == 60:
            final = S.Completed(result_ref=ResultRef(store_url="file:///tmp/r", key=f"k{i}"))
        elif i == 70:
            tr.state_history += [S.AwaitingRetry(), S.Retrying()]
            tr.run_count = 2
            final = S.Completed()
        else:
            final = S.Completed()
        tr.state_history.append(final)
        tr.state = final
        items.append((tr, final))
    if n > 110:
        items[80][0].name = "custom name"
        items[90][0].id = uuid.uuid4()
        items[100][0].cache_key = "ck"
        items[110][0].task_inputs = {"x": [{"input_type": "task_run", "id": str(uuid.uuid4())}]}
    return items


def _plain(row):
    return tuple(str(v) if v.__class__ is Json else v for v in row)


def test_blocks_hold_the_rows_of_the_row_by_row_path_in_order():
    items = _runs()
    flat = compact_task_runs(items)
    now = time.time()
    expected = [dict(zip(TASK_RUN_COLUMNS, _plain(r))) for r in task_run_values(flat, now)]
    blocks = task_run_blocks(flat, now)
    got = [{**shared, **dict(zip(keys, _plain(r)))} for shared, keys, rows in blocks for r in rows]
    assert got == expected and len(got) == 300
    # the runs of one shape between the odd ones share their task, flow run, tags and state
    shared, keys, rows = max(blocks, key=lambda b: len(b[2]))
    assert len(rows) >= 8 and shared["state_type"] == "COMPLETED" and shared["task_key"] == "mod.inc"
    assert "id" in keys and "state_history" in keys and "flow_run_id" in shared


def test_a_map_chunk_is_stored_the_same_by_column_and_by_row(storage):
    """Both backends: the rows of a chunk written from its blocks (shared values bound once) equal the rows
    written from row dicts, column for column."""
    items = _runs()
    flat = compact_task_runs(items)
    task_run = sa.table("task_run", *[sa.column(c) for c in ("id", "name", "state_type", "state_history")])
    tables = []
    for by_column in (True, False):
        batch = Batch()
        batch.compact.append((1234.5, list(flat), len(items)))
        if not by_column:
            batch.expand()
        storage.write(batch)
        with storage.engine.begin() as conn:
            tables.append(conn.execute(sa.text("SELECT * FROM task_run ORDER BY id")).all())
            conn.execute(sa.delete(task_run))
    assert len(tables[0]) == 300 and tables[0] == tables[1]
    by_name = {r.name: r for r in tables[0]}
    assert by_name["custom name"] and by_name["inc-45"].state_message == "boom 45"
    assert by_name["inc-5"].state_type == "RUNNING" and by_name["inc-6"].state_type == "COMPLETED"


def test_a_run_in_two_chunks_of_one_batch_ends_with_its_newer_row(storage):
    items = _runs(40)
    running = [(tr, tr.state_history[1]) for tr, _ in items]
    batch = Batch()
    batch.compact.append((1.0, compact_task_runs(running), 40))
    batch.compact.append((2.0, compact_task_runs(items), 40))
    storage.write(batch)
    with storage.engine.begin() as conn:
        rows = conn.execute(sa.text("SELECT state_type, created FROM task_run")).all()
    assert len(rows) == 40
    assert sorted({r.state_type for r in rows}) == ["COMPLETED", "RUNNING"]  # inc-5 never got further
    assert {r.created for r in rows} == {1.0}  # the first row's creation time is kept
