"""Work pools and workers in the run store, on SQLite and PostgreSQL: pools, templates, heartbeats, claims
(three processes racing for 200 runs: each claimed once) and the runs of a worker whose heartbeat stopped."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from distributary.errors import ConfigurationError, ObjectNotFound
from distributary.runstore.work_pools import default_job_template, render_job

ROOT = Path(__file__).resolve().parents[2]


def test_pool_crud_and_template(storage):
    pool = storage.create_work_pool("local", type="process")
    assert pool.type == "process" and "env" in pool.base_job_template["variables"]["properties"]
    with pytest.raises(ConfigurationError, match="already exists"):
        storage.create_work_pool("local")
    with pytest.raises(ConfigurationError, match="unknown work-pool type"):
        storage.create_work_pool("x", type="lambda")
    assert storage.update_work_pool("local", paused=True, concurrency_limit=2).is_paused
    assert [p.name for p in storage.read_work_pools()] == ["local"]
    storage.delete_work_pool("local")
    with pytest.raises(ObjectNotFound, match="work-pool create local --type process"):
        storage.read_work_pool("local")


def test_render_job_applies_job_variables_over_defaults():
    tpl = default_job_template("kubernetes")
    job = render_job(tpl, {"env": {"MODEL_VERSION": "v2"}, "cpu": "4", "memory": "16Gi"})
    assert job == {"env": {"MODEL_VERSION": "v2"}, "command": None, "working_dir": None, "image": None, "cpu": "4",
                   "memory": "16Gi", "labels": {}, "namespace": "default"}
    with pytest.raises(ConfigurationError, match="unknown job variable"):
        render_job(default_job_template("process"), {"gpu": 1})


def _pool_runs(storage, n, pool="local"):
    storage.create_work_pool(pool)
    dep = storage.create_deployment(flow_name="work", name="pooled", entrypoint="f.py:work", work_pool_name=pool)
    return dep, [storage.create_flow_run_from_deployment(dep.id).id for _ in range(n)]


def test_claims_respect_pause_and_limit(storage):
    _, runs = _pool_runs(storage, 5)
    storage.update_work_pool("local", concurrency_limit=2)
    got = storage.claim_pool_runs("local", "w1", 10)
    assert len(got) == 2 and all(r.worker_name == "w1" and r.state_type == "PENDING" for r in got)
    assert storage.claim_pool_runs("local", "w2", 10) == []  # at the pool's limit
    storage.update_work_pool("local", concurrency_limit=None, paused=True)
    assert storage.claim_pool_runs("local", "w2", 10) == []
    storage.update_work_pool("local", paused=False)
    assert len(storage.claim_pool_runs("local", "w2", 10)) == 3


def test_runs_of_a_worker_without_heartbeats_crash(storage):
    _, runs = _pool_runs(storage, 2)
    storage.worker_heartbeat("local", "w1")
    [claimed] = storage.claim_pool_runs("local", "w1", 1)
    assert storage.crash_orphaned_runs("local", timeout=60) == []
    time.sleep(0.2)
    assert storage.crash_orphaned_runs("local", timeout=0.1) == [str(claimed.id)]
    got = storage.read_flow_run(claimed.id)
    assert got.state_type == "CRASHED" and "heartbeats" in got.state.message
    assert [w.name for w in storage.read_workers("local")] == ["w1"]


CLAIMER = textwrap.dedent("""
    import json, os, sys, time
    from distributary.runstore.storage import SqlRunStorage
    url, go, name = sys.argv[1:4]
    st = SqlRunStorage(url=url)
    while not os.path.exists(go):
        time.sleep(0.005)
    mine, idle = [], 0
    while idle < 20:
        got = st.claim_pool_runs("local", name, 7)
        mine += [str(r.id) for r in got]
        idle = 0 if got else idle + 1
    print(json.dumps(mine))
""")


def test_three_workers_claim_each_of_200_runs_once(storage, store_url, tmp_path):
    _, runs = _pool_runs(storage, 200)
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, store_url, str(go), f"w{i}"], stdout=subprocess.PIPE,
                              text=True, cwd=ROOT) for i in range(3)]
    time.sleep(1.0)
    go.touch()
    claimed = []
    for p in procs:
        out, _ = p.communicate(timeout=180)
        assert p.returncode == 0
        claimed.append(json.loads(out))
    every = [rid for got in claimed for rid in got]
    assert sorted(every) == sorted(str(r) for r in runs)  # each run once, none twice, none missed
    by_worker = {r.id: r.worker_name for r in storage.read_flow_runs()}
    assert all(by_worker[__import__("uuid").UUID(rid)] == f"w{i}" for i, got in enumerate(claimed) for rid in got)


def test_claims_respect_the_deployments_concurrency_limit(storage):
    storage.create_work_pool("local")
    queued = storage.create_deployment(flow_name="work", name="queued", work_pool_name="local", concurrency_limit=1)
    dropped = storage.create_deployment(flow_name="work", name="dropped", work_pool_name="local",
                                        concurrency_limit=1, collision_strategy="CANCEL_NEW")
    for dep in (queued, dropped):
        for _ in range(3):
            storage.create_flow_run_from_deployment(dep.id)
    got = storage.claim_pool_runs("local", "w1", 10)
    assert sorted(r.deployment_id == queued.id for r in got) == [False, True]  # one run of each
    states = sorted(r.state_type for r in storage.read_flow_runs() if r.deployment_id == dropped.id)
    assert states == ["CANCELLED", "CANCELLED", "PENDING"]
    assert len([r for r in storage.read_flow_runs() if r.state_type == "SCHEDULED"]) == 2  # ENQUEUE: they wait
