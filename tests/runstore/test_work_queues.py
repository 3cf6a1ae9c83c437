"""Work queues in the run store, on SQLite and PostgreSQL: every pool's default queue, queue CRUD with unique
priorities, the queue a deployment's runs wait in, claims by priority / pause / queue limit, and the upgrade of a
store made before queues existed."""
from __future__ import annotations

import time
import uuid

import pytest
import sqlalchemy as sa

from distributary.errors import ConfigurationError, ObjectNotFound


def test_every_pool_has_a_default_queue_and_queues_keep_unique_priorities(storage):
    pool = storage.create_work_pool("local")
    [default] = storage.read_work_queues("local")
    assert (default.name, default.priority, default.id) == ("default", 1, pool.default_queue_id)
    low = storage.create_work_queue("local", "low")  # no priority: last
    high = storage.create_work_queue("local", "high", priority=1, concurrency_limit=2)  # the others move down
    assert [(q.name, q.priority) for q in storage.read_work_queues("local")] == [("high", 1), ("default", 2),
                                                                               ("low", 3)]
    assert high.concurrency_limit == 2 and high.work_pool_name == "local" and high.status == "NOT_READY"
    with pytest.raises(ConfigurationError, match="already has a queue 'low'"):
        storage.create_work_queue("local", "low")
    with pytest.raises(ObjectNotFound, match="work-queue create nope --pool local"):
        storage.read_work_queue_by_name("local", "nope")
    with pytest.raises(ObjectNotFound, match="work-pool create elsewhere"):
        storage.create_work_queue("elsewhere", "q")
    got = storage.update_work_queue(low.id, paused=True, concurrency_limit=None, description="batch")
    assert got.is_paused and got.status == "PAUSED" and got.description == "batch"
    assert storage.read_work_queue_by_name("local", "low").id == low.id
    with pytest.raises(ConfigurationError, match="default queue of work pool 'local'"):
        storage.delete_work_queue(default.id)
    storage.delete_work_queue(low.id)
    assert [q.name for q in storage.read_work_queues()] == ["high", "default"]
    storage.delete_work_pool("local")
    assert storage.read_work_queues() == []


def test_deployment_runs_wait_in_their_queue(storage):
    from distributary.schedules import Interval

    storage.create_work_pool("local")
    plain = storage.create_deployment(flow_name="work", name="plain", work_pool_name="local")
    assert plain.work_queue_name == "default"
    urgent = storage.create_deployment(flow_name="work", name="urgent", work_pool_name="local",
                                       work_queue_name="urgent", schedules=[Interval(60)])
    queue = storage.read_work_queue_by_name("local", "urgent")  # created with the deployment, as in Prefect
    run = storage.create_flow_run_from_deployment(urgent.id)
    assert (run.work_queue_name, run.work_queue_id) == ("urgent", queue.id)
    assert storage.schedule_runs(urgent.id) > 0
    assert {(r.work_queue_name, r.work_queue_id) for r in storage.read_flow_runs()} == {("urgent", queue.id)}
    other = storage.create_flow_run_from_deployment(plain.id)
    assert other.work_queue_name == "default"
    storage.update_work_queue(queue.id, name="asap")  # a rename carries the runs and the deployment along
    assert storage.read_deployment(urgent.id).work_queue_name == "asap"
    assert storage.read_flow_run(run.id).work_queue_name == "asap"
    storage.delete_work_queue(queue.id)  # its waiting runs go to the default queue
    moved = storage.read_flow_run(run.id)
    assert moved.work_queue_name == "default" and moved.work_queue_id == storage.read_work_pool("local").default_queue_id


def _runs(storage, queue, n, **queue_opts):
    if queue != "default":
        storage.create_work_queue("local", queue, **queue_opts)
    dep = storage.create_deployment(flow_name="work", name=f"to-{queue}", work_pool_name="local",
                                    work_queue_name=queue)
    return [storage.create_flow_run_from_deployment(dep.id).id for _ in range(n)]


def test_claims_go_by_priority_skip_paused_queues_and_keep_queue_limits(storage):
    storage.create_work_pool("local")
    low = _runs(storage, "low", 3, priority=5)
    default = _runs(storage, "default", 2)
    high = _runs(storage, "high", 4, priority=1, concurrency_limit=2)
    got = storage.claim_pool_runs("local", "w1", 3)
    # high first, but only 2 of it at once (its limit); then the default queue (priority 2 after high's insert)
    assert sorted(str(r.id) for r in got) == sorted(str(i) for i in high[:2] + default[:1])
    storage.update_work_queue(storage.read_work_queue_by_name("local", "default").id, paused=True)
    got = storage.claim_pool_runs("local", "w1", 10)
    assert {r.work_queue_name for r in got} == {"low"} and len(got) == 3  # high is full, default is paused
    storage.update_work_queue(storage.read_work_queue_by_name("local", "high").id, concurrency_limit=None)
    assert [r.work_queue_name for r in storage.claim_pool_runs("local", "w1", 10)] == ["high", "high"]
    assert storage.claim_pool_runs("local", "w2", 10, work_queue_names=["low", "high"]) == []
    assert storage.read_work_queue_by_name("local", "low").status == "READY"  # polled just now
    assert len(low) == 3


def test_due_runs_listed_by_queue_priority_without_claiming(storage):
    storage.create_work_pool("local")
    later = _runs(storage, "later", 1, priority=9)
    first = _runs(storage, "first", 1, priority=1)
    listed = storage.read_pool_due_runs("local", limit=10)
    assert [r.id for r in listed] == [first[0], later[0]]  # priority first, though created later
    assert [r.id for r in storage.read_pool_due_runs("local", work_queue_names=["later"])] == later
    assert all(r.state_type == "SCHEDULED" for r in storage.read_flow_runs())


def test_upgrade_from_0008_gives_old_pools_a_default_queue(store_url):
    from distributary.runstore import db
    from distributary.runstore.storage import SqlRunStorage

    eng = db._create_engine(db.normalize_url(store_url))
    db.upgrade(eng, "0008_deployment_parameter_schema")
    pid, did, fid, rid, now = (str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()),
                               time.time())
    with eng.begin() as conn:
        conn.execute(sa.text("INSERT INTO work_pool (id, name, type, paused, created, updated) "
                             "VALUES (:id, 'old-pool', 'process', :f, :t, :t)"), {"id": pid, "t": now, "f": False})
        conn.execute(sa.text("INSERT INTO flow (id, name, created) VALUES (:f, 'old-flow', :t)"), {"f": fid, "t": now})
        conn.execute(sa.text(
            "INSERT INTO deployment (id, name, flow_id, flow_name, paused, work_pool_name, created, updated) "
            "VALUES (:id, 'dep', :f, 'old-flow', :p, 'old-pool', :t, :t)"), {"id": did, "f": fid, "t": now, "p": False})
        conn.execute(sa.text(
            "INSERT INTO flow_run (id, name, flow_id, flow_name, run_count, total_run_time, state_type, state_name,"
            " state_ts, created, expected_start_time, deployment_id, work_pool_name, auto_scheduled) VALUES (:id,"
            " 'old-run', :f, 'old-flow', 0, 0, 'SCHEDULED', 'Scheduled', :t, :t, :t, :d, 'old-pool', :a)"),
            {"id": rid, "f": fid, "t": now - 1, "d": did, "a": False})
    db.upgrade(eng)
    st = SqlRunStorage(engine=eng)
    pool = st.read_work_pool("old-pool")
    [queue] = st.read_work_queues("old-pool")
    assert queue.name == "default" and pool.default_queue_id == queue.id
    assert st.read_deployment(did).work_queue_name == "default"
    run = st.read_flow_run(rid)
    assert (run.work_queue_name, run.work_queue_id) == ("default", queue.id)
    assert [r.id for r in st.claim_pool_runs("old-pool", "w1", 5)] == [run.id]  # still claimed after the upgrade
    assert st.create_flow_run_from_deployment(did).work_queue_id == queue.id
    eng.dispose()
