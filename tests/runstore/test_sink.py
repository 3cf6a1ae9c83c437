"""The sink never blocks or breaks a flow: a locked or unavailable database delays the writes, loses nothing,
and says so."""
from __future__ import annotations

import logging
import sqlite3
import time

from events import flow_with_tasks

from distributary.runstore.sink import RunStoreSink
from distributary.runstore.storage import SqlRunStorage
from distributary.schemas import filters as F


def _count(storage, fr):
    return storage.count_task_runs(F.TaskRunFilter(flow_run_id=F.TaskRunFilterFlowRunId(any_=[fr.id])))


def test_handle_never_waits_for_the_database_and_flush_waits_until_written(sqlite_url, tmp_path, monkeypatch):
    """A large delivery is encoded (and sent to the writer process) by `handle`, but never waits for the
    database: with the file locked for longer than the busy timeout, it returns long before that timeout."""
    monkeypatch.setenv("DISTRIBUTARY_RUNSTORE_BUSY_TIMEOUT", "20")
    storage = SqlRunStorage(url=sqlite_url)
    blocker = sqlite3.connect(sqlite_url[len("sqlite:///"):], isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    fr, trs, ev = flow_with_tasks(20_000)
    sink = RunStoreSink(storage=storage, spool_dir=tmp_path / "spool")
    t0 = time.perf_counter()
    sink.handle(ev)
    assert time.perf_counter() - t0 < 10  # the writer is still waiting for the lock (20 s)
    assert sink.flush(0.5) is False
    blocker.execute("ROLLBACK")
    blocker.close()
    assert sink.flush(60)
    assert _count(storage, fr) == 20_000  # readable right after flush
    sink.close()


def test_locked_database_delays_writes_and_loses_nothing(sqlite_url, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("DISTRIBUTARY_RUNSTORE_BUSY_TIMEOUT", "0.2")
    storage = SqlRunStorage(url=sqlite_url)
    path = sqlite_url[len("sqlite:///"):]
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    fr, trs, ev = flow_with_tasks(500)
    sink = RunStoreSink(storage=storage, spool_dir=tmp_path / "spool")
    with caplog.at_level(logging.WARNING, logger="distributary.runstore"):
        t0 = time.perf_counter()
        sink.handle(ev)
        assert time.perf_counter() - t0 < 0.05
        assert sink.flush(1.0) is False
        assert any("cannot be written" in r.getMessage() for r in caplog.records)
        blocker.execute("ROLLBACK")
        blocker.close()
        assert sink.flush(30) is True
    assert _count(storage, fr) == 500
    assert any("writable again" in r.getMessage() for r in caplog.records)
    sink.close()


class _Down:
    def write(self, batch):
        raise ConnectionError("database is down")


def test_unwritten_rows_are_spooled_and_written_by_the_next_sink(sqlite_url, tmp_path):
    spool = tmp_path / "spool"
    fr, trs, ev = flow_with_tasks(300)
    sink = RunStoreSink(storage=_Down(), spool_dir=spool)
    sink.handle(ev)
    assert sink.close(timeout=0.5) is False
    assert len(list(spool.glob("*.batch"))) == 1 and sink.lost == 0
    storage = SqlRunStorage(url=sqlite_url)
    nxt = RunStoreSink(storage=storage, spool_dir=spool)
    assert nxt.flush(10)
    deadline = time.monotonic() + 10
    while _count(storage, fr) < 300 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _count(storage, fr) == 300 and list(spool.glob("*")) == []
    nxt.close()


def test_runs_not_started_yet_are_written_after_a_while_or_at_a_flush(sqlite_url, tmp_path, monkeypatch):
    from distributary import states as S
    from distributary.runs import STATES_CHANGED, TASK_RUNS_CREATED, TaskRun
    from distributary.runstore import sink as sink_mod

    storage = SqlRunStorage(url=sqlite_url)
    fr, _, _ = flow_with_tasks(0)
    monkeypatch.setattr(sink_mod, "WRITE_INTERVAL", 0.05)
    monkeypatch.setattr(sink_mod, "PENDING_DELAY", 0.5)
    pending = S.Pending()  # one Pending state shared by the runs of a .map(), as the thread runner makes them
    waiting = [TaskRun(i, None, "add", "mod.add", fr.id, {}, frozenset(), pending, dynamic_key=i)
               for i in range(1, 101)]
    sink = RunStoreSink(storage=storage, spool_dir=tmp_path / "spool")
    sink.handle([(TASK_RUNS_CREATED, None, waiting)])
    deadline = time.monotonic() + 20
    while _count(storage, fr) < 100 and time.monotonic() < deadline:  # written once they waited PENDING_DELAY
        time.sleep(0.05)
    assert _count(storage, fr) == 100

    started = [TaskRun(i, None, "add", "mod.add", fr.id, {}, frozenset(), pending, dynamic_key=i)
               for i in range(101, 201)]
    sink.handle([(TASK_RUNS_CREATED, None, started)])
    items = []
    for tr in started[:50]:  # half of them move on, in one bulk event (a cluster batch's outcome)
        sts = [S.Running(), S.Completed()]
        tr.state, _ = sts[-1], tr.state_history.extend(sts)
        items.append((tr, sts))
    sink.handle([(STATES_CHANGED, None, items)])
    monkeypatch.setattr(sink_mod, "PENDING_DELAY", 3600.0)
    assert sink.flush(30)  # a flush writes what waits
    by_type = {}
    for run in storage.read_task_runs(limit=1000):
        by_type.setdefault(run.state_type.value, set()).add(run.name)
    assert by_type == {"PENDING": {f"add-{i}" for i in range(1, 101)} | {f"add-{i}" for i in range(151, 201)},
                       "COMPLETED": {f"add-{i}" for i in range(101, 151)}}
    assert [s.name for s in storage.read_states(started[0].id)] == ["Pending", "Running", "Completed"]
    sink.close()
