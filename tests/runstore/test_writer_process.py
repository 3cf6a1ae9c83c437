"""A flow that records many task runs into SQLite has them written by a writer process: readable the moment the
flow returns, and nothing lost when that process dies or the database is locked."""
from __future__ import annotations

import logging
import os
import signal
import sqlite3
import uuid

import pytest
from events import flow_with_tasks

from distributary import flow, task
from distributary.client.orchestration import get_client
from distributary.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId
from distributary.runstore import current_sink
from distributary.runstore import sink as sink_mod
from distributary.runstore.sink import RunStoreSink
from distributary.runstore.storage import SqlRunStorage
from distributary.schemas import filters as F
from distributary.task_runners import ThreadPoolTaskRunner


@task
def inc(x: int) -> int:
    return x + 1


@flow(task_runner=ThreadPoolTaskRunner(max_workers=4))
def fan(n: int) -> int:
    return sum(inc.map(range(n)).result())


@pytest.fixture
def small_process_at(monkeypatch):
    monkeypatch.setattr(sink_mod, "PROCESS_AT", 100)


def _recorded(client, n_flow_runs: int) -> list[int]:
    runs = client.read_flow_runs()
    assert len(runs) == n_flow_runs and all(r.state_type == "COMPLETED" for r in runs)
    return [client.storage.count_task_runs(TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[r.id])))
            for r in runs]


def test_a_large_map_is_written_by_a_writer_process_and_readable_when_the_flow_returns(run_home,
                                                                                      small_process_at):
    assert fan(1000) == sum(range(1, 1001))
    proc = current_sink()._process
    assert proc is not None and proc.pid != os.getpid()
    client = get_client(sync_client=True)
    assert _recorded(client, 1) == [1000]
    (one,) = client.read_task_runs(limit=1)
    assert [s.type for s in client.read_task_run_states(one.id)] == ["PENDING", "RUNNING", "COMPLETED"]
    from distributary import runstore

    runstore.stop_sink()
    assert proc._proc.poll() is not None  # the sink's close ended it


def test_a_writer_process_that_dies_loses_nothing_and_says_so(run_home, small_process_at, caplog):
    assert fan(500) == sum(range(1, 501))
    proc = current_sink()._process
    os.kill(proc.pid, signal.SIGKILL)
    proc._proc.wait(10)
    with caplog.at_level(logging.WARNING, logger="distributary.runstore"):
        assert fan(700) == sum(range(1, 701))  # written in this process from now on
    assert any(f"writer process (pid {proc.pid})" in r.getMessage() and "writes its run records itself"
               in r.getMessage() for r in caplog.records)
    assert current_sink()._process is None
    assert sorted(_recorded(get_client(sync_client=True), 2)) == [500, 700]


def test_a_locked_database_delays_the_writer_process_and_loses_nothing(sqlite_url, tmp_path, monkeypatch,
                                                                       small_process_at):
    monkeypatch.setenv("DISTRIBUTARY_RUNSTORE_BUSY_TIMEOUT", "0.2")  # the child reads it too
    storage = SqlRunStorage(url=sqlite_url)
    blocker = sqlite3.connect(sqlite_url[len("sqlite:///"):], isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    fr, _, ev = flow_with_tasks(500)
    sink = RunStoreSink(storage=storage, spool_dir=tmp_path / "spool")
    sink.handle(ev)
    assert sink.flush(1.5) is False
    assert sink._process is not None  # the child met the lock, not this process
    blocker.execute("ROLLBACK")
    blocker.close()
    assert sink.flush(30) is True
    assert storage.count_task_runs(F.TaskRunFilter(flow_run_id=F.TaskRunFilterFlowRunId(any_=[fr.id]))) == 500
    proc = sink._process
    sink.close()
    assert proc._proc.poll() is not None


def test_one_compact_chunk_is_written_as_exactly_the_rows_it_expands_to(tmp_path):
    """The writer's direct path (statement parameters straight from the compact encoding) stores what the row
    dicts stored, column for column, and leaves the batch as it was (a failed write is retried with it)."""
    from distributary.runstore.batch import Batch, write_batch
    from distributary.runstore.compact import compact_task_runs

    _, trs, _ = flow_with_tasks(60, fail_every=7)  # failures carry a message: the general history encoding
    trs[3].cache_key, trs[4].task_inputs = "k-3", {"x": [{"input_type": "parameter", "name": "x"}]}
    flat = compact_task_runs((tr, tr.state) for tr in trs)
    tables = []
    for direct in (True, False):
        url = f"sqlite:///{tmp_path}/{direct}.db"
        SqlRunStorage(url=url).engine.dispose()
        batch = Batch()
        batch.compact.append((1234.5, list(flat), len(trs)))
        if not direct:
            batch.expand()  # rows first: the general path
        conn = sqlite3.connect(url[len("sqlite:///"):], isolation_level=None)
        cur = conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        write_batch(cur, "sqlite", batch)
        cur.execute("COMMIT")
        if direct:
            assert batch.compact and batch.compact[0][1] == flat and not batch.task_runs
        tables.append(conn.execute("SELECT * FROM task_run ORDER BY id").fetchall())
        conn.close()
    assert len(tables[0]) == 60 and tables[0] == tables[1]


def _large_map(n: int):
    """A flow run and `n` task runs created at once (a large .map()): the creation's events, then, per step, the
    events that move every run on (Running; then Completed and finished)."""
    from events import change, new_flow_run

    from distributary import states as S
    from distributary.runs import FLOW_RUN_CREATED, RUN_FINISHED, TASK_RUNS_CREATED, TaskRun

    fr = new_flow_run("fan")
    created: list = [(FLOW_RUN_CREATED, fr, None)]
    change(fr, S.Running(), created)
    trs = [TaskRun(uuid.uuid4(), f"inc-{i}", "inc", "mod.inc", fr.id, {}, frozenset(), S.Pending(), dynamic_key=i)
           for i in range(n)]
    created.append((TASK_RUNS_CREATED, None, trs))

    def running() -> list:
        ev: list = []
        for tr in trs:
            change(tr, S.Running(), ev)
        return ev

    def completed() -> list:
        ev: list = []
        for tr in trs:
            change(tr, S.Completed(), ev)
            ev.append((RUN_FINISHED, tr, tr.state))
        return ev

    return fr, trs, created, running, completed


def _histories(sqlite_url: str, fr) -> dict[tuple[str, ...], int]:
    """How many task runs of `fr` have each (state type, its history's types) in the file."""
    import json
    from collections import Counter

    conn = sqlite3.connect(sqlite_url[len("sqlite:///"):])
    rows = conn.execute("SELECT state_type, state_history FROM task_run WHERE flow_run_id = ?", (str(fr.id),))
    got = Counter((t, *(s[0] for s in json.loads(h))) for t, h in rows)
    conn.close()
    return dict(got)


def _ready_sink(storage, tmp_path, created) -> RunStoreSink:
    sink = RunStoreSink(storage=storage, spool_dir=tmp_path / "spool")
    sink.handle(created)
    assert sink.flush(30)  # the process is started and has written the creation
    assert sink._process is not None and sink._process.ready
    return sink


def test_rows_sent_from_the_delivering_thread_meet_a_locked_database_and_are_written_in_order(
        sqlite_url, tmp_path, monkeypatch, small_process_at):
    """A large map's rows go to the writer process straight from `handle`. When the database is locked they come
    back unwritten, are kept, and once it is free every run ends in its last state, none in an older one."""
    monkeypatch.setenv("DISTRIBUTARY_RUNSTORE_BUSY_TIMEOUT", "0.2")
    storage = SqlRunStorage(url=sqlite_url)
    fr, trs, created, running, completed = _large_map(300)
    sink = _ready_sink(storage, tmp_path, created)
    blocker = sqlite3.connect(sqlite_url[len("sqlite:///"):], isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    sink.handle(running())
    assert sink._direct_sent == 1  # sent by handle, not by the writer thread
    sink.handle(completed())
    assert sink.flush(1.0) is False
    assert sink._held is not None or sink._returned  # the rows came back unwritten and are kept
    blocker.execute("ROLLBACK")
    blocker.close()
    assert sink.flush(30) is True
    assert _histories(sqlite_url, fr) == {("COMPLETED", "PENDING", "RUNNING", "COMPLETED"): 300}
    assert sink._process is not None  # still the writer
    sink.close()


def test_rows_in_the_pipe_of_a_writer_process_that_dies_are_written_here(sqlite_url, tmp_path, caplog,
                                                                          small_process_at):
    storage = SqlRunStorage(url=sqlite_url)
    fr, trs, created, running, completed = _large_map(300)
    sink = _ready_sink(storage, tmp_path, created)
    proc = sink._process
    os.kill(proc.pid, signal.SIGSTOP)  # it reads nothing more: the frame stays in the pipe
    try:
        sink.handle(running())
        assert sink._direct_sent == 1
    finally:
        os.kill(proc.pid, signal.SIGKILL)
    proc._proc.wait(10)
    with caplog.at_level(logging.WARNING, logger="distributary.runstore"):
        sink.handle(completed())
        assert sink.flush(30) is True
    assert any(f"writer process (pid {proc.pid})" in r.getMessage() for r in caplog.records)
    assert sink._process is None
    assert _histories(sqlite_url, fr) == {("COMPLETED", "PENDING", "RUNNING", "COMPLETED"): 300}
    sink.close()


def test_rows_encoded_before_the_map_became_large_are_sent_before_newer_ones(sqlite_url, tmp_path):
    """Rows encoded while the sink was not large yet wait for the writer thread; once rows go straight to the
    writer process, those older rows go first, in an earlier frame (else a run could end in an older state)."""
    from distributary.runstore.compact import task_run_values
    from distributary.runstore.sink import ENCODED

    fr, trs, created, running, completed = _large_map(2_000)
    sink = RunStoreSink(storage=SqlRunStorage(url=sqlite_url), spool_dir=tmp_path / "spool")
    sink._interval = 60.0  # the writer thread leaves what it is handed waiting
    sink.handle(running() * 3)  # 6,000 events: encoded by handle, left for the writer thread
    assert sum(1 for e in sink._pending if e[0] == ENCODED) == 1

    class Process:  # stands for a ready writer process: keeps what it is sent, answers it written
        ready, last_seq, frames = True, 0, []

        def send(self, batch, wait=False, tag=None):
            self.last_seq += 1
            self.frames.append(batch)
            sink._on_reply(self.last_seq, tag, ("ok",))
            return self.last_seq

    proc = Process()
    sink._large, sink._process = True, proc
    sink.handle(completed())
    assert [[count for _, _, count in frame.compact] for frame in proc.frames] == [[2_000], [2_000]]
    states = [{row[7] for row in task_run_values(frame.compact[0][1], 0.0)} for frame in proc.frames]
    assert states == [{"RUNNING"}, {"COMPLETED"}]  # the older chunk first
    assert not any(e[0] == ENCODED for e in sink._pending)
    sink._process = None
    sink.close(5)


def test_a_large_delivery_goes_in_frames_and_what_a_dead_process_did_not_take_is_written_here(sqlite_url,
                                                                                                tmp_path):
    """A delivery of 5,000 runs is sent as frames of at most 2,000 (only one frame's pickle in memory at a
    time). When the process ends between two of them, the frames not sent are kept, after the sent ones, and
    written by this process: every run ends in its last state."""
    from distributary.runstore.writer_process import WriterProcessError

    storage = SqlRunStorage(url=sqlite_url)
    fr, trs, created, running, completed = _large_map(5_000)
    sink = RunStoreSink(storage=storage, spool_dir=tmp_path / "spool")
    sink.handle(created)
    assert sink.flush(30)
    real = sink._process
    sink.handle(running())
    assert sink.flush(30)

    class Process:  # takes the first frame, then has ended
        ready, last_seq, frames = True, real.last_seq, []

        def send(self, batch, wait=False, tag=None):
            if self.frames:
                raise WriterProcessError("it ended")
            self.last_seq += 1
            self.frames.append([c for _, _, c in batch.compact])
            return self.last_seq

    proc = Process()
    sink._process = proc
    sink.handle(completed())
    assert proc.frames == [[2_000]]
    (kept,) = sink._returned.values()
    assert [c for _, _, c in kept.compact] == [2_000, 1_000]
    sink._direct_answered += 1  # the stand-in never answers the frame it took
    sink._process = None
    real.close()
    assert sink.flush(30) is True
    # the 3,000 runs of the frames not sent end Completed; the 2,000 the stand-in took (and dropped) stay Running
    assert _histories(sqlite_url, fr) == {("COMPLETED", "PENDING", "RUNNING", "COMPLETED"): 3_000,
                                          ("RUNNING", "PENDING", "RUNNING"): 2_000}
    sink.close()


def test_the_writer_process_checkpoints_its_rows_into_the_database_once_the_frames_stop(sqlite_url):
    """The child leaves a large map's rows in the WAL while frames keep coming (a commit does not copy them into
    the database file each 1,000 pages) and copies them in once the frames stop: the file holds them then."""
    import time

    from distributary.runstore.batch import Batch
    from distributary.runstore.compact import compact_task_runs
    from distributary.runstore.writer_process import IDLE_CHECKPOINT, WriterProcess

    SqlRunStorage(url=sqlite_url).engine.dispose()
    path = sqlite_url[len("sqlite:///"):]
    before = os.path.getsize(path)
    _, trs, _ = flow_with_tasks(3000)
    proc = WriterProcess(path)
    try:
        batch = Batch()
        batch.compact.append((time.time(), compact_task_runs((tr, tr.state) for tr in trs), len(trs)))
        proc.write(batch)
        deadline = time.monotonic() + 10 + IDLE_CHECKPOINT
        while os.path.getsize(path) == before and time.monotonic() < deadline:
            time.sleep(0.05)
        grown = os.path.getsize(path)
    finally:
        proc.close()
    assert grown > before + 3000 * 100  # the rows' pages are in the file itself
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM task_run").fetchone() == (3000,)
    conn.close()
