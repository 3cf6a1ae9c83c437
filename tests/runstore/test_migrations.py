"""The schema is upgraded by migrations, never recreated; a database it cannot use says so clearly."""
from __future__ import annotations

import time
import uuid

import pytest
import sqlalchemy as sa

from distributary.errors import RunStoreError, RunStoreRevisionError
from distributary.runstore import db
from distributary.runstore.storage import SqlRunStorage


def test_upgrade_from_previous_revision_keeps_the_data(store_url):
    eng = db._create_engine(db.normalize_url(store_url))
    db.upgrade(eng, "0001_runs")
    rid, fid = str(uuid.uuid4()), str(uuid.uuid4())
    with eng.begin() as conn:
        assert db.current_revision(conn) == "0001_runs"
        assert not sa.inspect(conn).has_table("artifact")
        conn.execute(sa.text(
            "INSERT INTO flow (id, name, created) VALUES (:f, 'old-flow', :t)"), {"f": fid, "t": time.time()})
        conn.execute(sa.text(
            "INSERT INTO flow_run (id, name, flow_id, flow_name, run_count, total_run_time, state_type, state_name, state_ts,"
            " created) VALUES (:id, 'old-run', :f, 'old-flow', 1, 2.5, 'COMPLETED', 'Completed', :t, :t)"),
            {"id": rid, "f": fid, "t": time.time()})
    db.upgrade(eng)
    storage = SqlRunStorage(engine=eng)
    got = storage.read_flow_run(rid)
    assert got.name == "old-run" and got.state_type == "COMPLETED" and got.total_run_time.total_seconds() == 2.5
    assert storage.read_artifacts() == []  # the new table is there
    with eng.connect() as conn:
        assert db.current_revision(conn) == db.HEAD
    eng.dispose()


def test_deployments_from_before_0010_enforce_their_parameter_schema(store_url):
    eng = db._create_engine(db.normalize_url(store_url))
    db.upgrade(eng, "0009_work_queues")
    did, now = str(uuid.uuid4()), time.time()
    with eng.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO deployment (id, name, flow_id, flow_name, paused, created, updated) "
            "VALUES (:id, 'old', :f, 'work', :no, :t, :t)"), {"id": did, "f": str(uuid.uuid4()), "no": False, "t": now})
    db.upgrade(eng)
    assert SqlRunStorage(engine=eng).read_deployment(did).enforce_parameter_schema is True  # Prefect 3's default
    eng.dispose()


def test_newer_revision_is_refused_naming_both(store_url):
    eng = db._create_engine(db.normalize_url(store_url))
    db.upgrade(eng)
    with eng.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0099_from_the_future'"))
    with pytest.raises(RunStoreRevisionError) as err:
        db.upgrade(eng)
    assert "0099_from_the_future" in str(err.value) and db.HEAD in str(err.value)
    eng.dispose()


def test_head_is_the_newest_migration():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(db.MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_current_head() == db.HEAD


def test_corrupt_sqlite_file_is_a_clear_error(tmp_path):
    path = tmp_path / "runs.db"
    path.write_bytes(b"this is not a database" * 200)
    with pytest.raises(RunStoreError, match="not a readable SQLite database"):
        SqlRunStorage(url=f"sqlite:///{path}")
    assert path.read_bytes().startswith(b"this is not")  # nothing overwritten


def test_unreachable_postgres_fails_fast(unused_port):
    t0 = time.monotonic()
    with pytest.raises(RunStoreError, match="127.0.0.1"):
        SqlRunStorage(url=f"postgresql://postgres@127.0.0.1:{unused_port}/nope")
    assert time.monotonic() - t0 < 15


@pytest.fixture
def unused_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_task_runs_recorded_before_0003_keep_their_state_rows(store_url):
    eng = db._create_engine(db.normalize_url(store_url))
    db.upgrade(eng, "0002_artifacts_variables")
    tid, now = str(uuid.uuid4()), time.time()
    with eng.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO task_run (id, name, task_key, dynamic_key, run_count, total_run_time, state_type,"
            " state_name, state_ts, created) VALUES (:id, 'old-0', 'm.old', '0', 1, 0.1, 'COMPLETED', 'Completed',"
            " :t, :t)"), {"id": tid, "t": now})
        for i, (typ, name) in enumerate([("PENDING", "Pending"), ("RUNNING", "Running"), ("COMPLETED", "Completed")]):
            conn.execute(sa.text("INSERT INTO run_state (run_id, type, name, timestamp) VALUES (:r, :ty, :n, :t)"),
                         {"r": tid, "ty": typ, "n": name, "t": now + i})
    db.upgrade(eng)
    storage = SqlRunStorage(engine=eng)
    assert storage.read_task_run(tid).name == "old-0"
    assert [s.type for s in storage.read_states(tid)] == ["PENDING", "RUNNING", "COMPLETED"]
    assert storage.count_states() == 3
    eng.dispose()


def test_the_writer_knows_the_json_columns_of_the_models():
    import sqlalchemy as sa

    from distributary.runstore.batch import JSON_COLUMNS
    from distributary.runstore.models import TABLES

    from_models = {name: frozenset(c.name for c in t.columns if isinstance(c.type, sa.JSON))
                   for name, t in TABLES.items()}
    assert from_models == JSON_COLUMNS


def test_deployments_registered_before_0008_keep_their_fields_and_take_a_parameter_schema(store_url):
    eng = db._create_engine(db.normalize_url(store_url))
    db.upgrade(eng, "0007_infrastructure_pid")
    did, fid, now = str(uuid.uuid4()), str(uuid.uuid4()), time.time()
    with eng.begin() as conn:
        assert "parameter_openapi_schema" not in {c["name"] for c in sa.inspect(conn).get_columns("deployment")}
        conn.execute(sa.text(
            "INSERT INTO deployment (id, name, flow_id, flow_name, entrypoint, parameters, tags, paused,"
            " concurrency_limit, collision_strategy, created, updated) VALUES (:id, 'nightly', :f, 'etl', 'flows.py:etl',"
            " :p, :t, false, 2, 'ENQUEUE', :now, :now)"),
            {"id": did, "f": fid, "p": '{"n": 1}', "t": '["prod"]', "now": now})
    db.upgrade(eng)
    storage = SqlRunStorage(engine=eng)
    dep = storage.read_deployment_by_name("etl/nightly")
    assert (dep.id, dep.entrypoint, dep.parameters, dep.tags) == (uuid.UUID(did), "flows.py:etl", {"n": 1}, ["prod"])
    assert dep.concurrency_limit == 2 and dep.parameter_openapi_schema is None
    schema = {"title": "Parameters", "type": "object", "properties": {"n": {"title": "n", "position": 0,
              "type": "integer"}}, "required": ["n"], "definitions": {}}
    assert storage.update_deployment(did, parameter_openapi_schema=schema).parameter_openapi_schema == schema
    eng.dispose()
