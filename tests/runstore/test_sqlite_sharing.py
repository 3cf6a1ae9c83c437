"""One SQLite file shared by many processes: readers never wait for writers, concurrent writers never see
"database is locked" and lose nothing."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from events import flow_with_tasks

from distributary.runstore.sink import RunStoreSink
from distributary.runstore.storage import SqlRunStorage


def test_reads_do_not_wait_for_a_writer(sqlite_url, tmp_path, monkeypatch):
    monkeypatch.setenv("DISTRIBUTARY_RUNSTORE_BUSY_TIMEOUT", "5")
    storage = SqlRunStorage(url=sqlite_url)
    fr, trs, ev = flow_with_tasks(10)
    sink = RunStoreSink(storage=storage, spool_dir=tmp_path / "spool")
    sink.handle(ev)
    assert sink.flush(30)
    # another process is in the middle of a write transaction (as a busy flow's writer often is)
    writer = sqlite3.connect(sqlite_url[len("sqlite:///"):], isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO variable (id, name, value, tags, created, updated) "
                   "VALUES ('00000000-0000-0000-0000-000000000001', 'pending', '1', '[]', 1, 1)")
    try:
        t0 = time.perf_counter()
        assert [f.name for f in storage.read_flows()] == ["etl"]
        assert len(storage.read_task_runs(limit=100)) == 10
        assert storage.read_flow_run(fr.id).state.is_completed()
        assert storage.read_variable_by_name("pending") is None  # not committed yet: not seen
        assert time.perf_counter() - t0 < 2.0  # no wait for the busy timeout, no "database is locked"
    finally:
        writer.execute("COMMIT")
        writer.close()
    assert storage.read_variable_by_name("pending") is not None
    sink.close()
    storage.engine.dispose()


WRITER = r"""
import logging, sys
sys.path.insert(0, {here!r})
from events import flow_with_tasks
from distributary.runstore.sink import RunStoreSink

messages = []
class Catch(logging.Handler):
    def emit(self, record):
        messages.append(record.getMessage())
logging.getLogger().addHandler(Catch())
sink = RunStoreSink(url={url!r})
for _ in range({flows}):
    sink.handle(flow_with_tasks({tasks})[2])
ok = sink.flush(180)
print("OK" if ok and sink.lost == 0 and not messages else f"FAILED lost={{sink.lost}} {{messages[:3]}}")
"""


@pytest.mark.slow
def test_eight_processes_record_into_one_sqlite_file(sqlite_url):
    flows, tasks = 2, 1500
    SqlRunStorage(url=sqlite_url).engine.dispose()  # the file exists; the eight race on writes, not on creation
    code = WRITER.format(here=str(Path(__file__).parent), url=sqlite_url, flows=flows, tasks=tasks)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(8)]
    outs = [p.communicate(timeout=240) for p in procs]
    for out, err in outs:
        assert out.strip() == "OK", err[-2000:]
        assert "database is locked" not in err
    storage = SqlRunStorage(url=sqlite_url)
    assert storage.count_task_runs() == 8 * flows * tasks
    assert storage.count_states() == 8 * flows * (3 * tasks + 3)  # Pending, Running, Completed each
    assert len(storage.read_flow_runs()) == 8 * flows and len(storage.read_logs()) == 8 * flows * 2
    storage.engine.dispose()
