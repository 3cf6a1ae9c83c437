"""Global concurrency limits and rate limits in the run store, on SQLite and PostgreSQL: the limits themselves,
slots taken all-or-none, decay, leases that expire, several processes contending for one limit (never more
holders than the limit) and a SIGKILLed holder whose slots come back when its lease expires."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from procs import CONCURRENCY_CONTENDER, max_overlap

from distributary.errors import AcquireConcurrencySlotTimeoutError, ConfigurationError, ObjectNotFound

ROOT = Path(__file__).resolve().parents[2]


def test_limit_crud(storage):
    g = storage.create_concurrency_limit("db", 3)
    assert (g.name, g.limit, g.active, g.active_slots, g.slot_decay_per_second) == ("db", 3, True, 0, 0.0)
    with pytest.raises(ConfigurationError, match="already exists"):
        storage.create_concurrency_limit("db", 1)
    assert storage.read_concurrency_limit(g.id).name == "db"
    got = storage.update_concurrency_limit("db", limit=5, active=False, slot_decay_per_second=0.5)
    assert (got.limit, got.active, got.slot_decay_per_second) == (5, False, 0.5)
    storage.create_concurrency_limit("api", 1)
    assert [x.name for x in storage.read_concurrency_limits()] == ["api", "db"]
    storage.delete_concurrency_limit(g.id)
    with pytest.raises(ObjectNotFound, match="gcl create db"):
        storage.read_concurrency_limit("db")
    with pytest.raises(ConfigurationError):
        storage.create_concurrency_limit("neg", -1)


def test_slots_are_taken_from_every_limit_or_from_none(storage):
    storage.create_concurrency_limit("a", 2)
    storage.create_concurrency_limit("b", 1)
    first = storage.acquire_concurrency_slots(["a", "b"], 1)
    assert first.acquired and first.lease_id is not None
    refused = storage.acquire_concurrency_slots(["a", "b"], 1)
    assert not refused.acquired and refused.lease_id is None
    assert storage.read_concurrency_limit("a").active_slots == 1  # "a" had room, but "b" refused: nothing taken
    assert storage.release_concurrency_slots(first.lease_id)
    assert not storage.release_concurrency_slots(first.lease_id)  # released once
    assert [storage.read_concurrency_limit(n).active_slots for n in ("a", "b")] == [0, 0]
    with pytest.raises(ConfigurationError, match="more than the limit"):
        storage.acquire_concurrency_slots(["a"], 3)
    missing = storage.acquire_concurrency_slots(["a", "nope"], 1)
    assert missing.acquired and missing.missing == ["nope"]


def test_inactive_limits_do_not_limit(storage):
    storage.create_concurrency_limit("off", 1, active=False)
    assert all(storage.acquire_concurrency_slots(["off"], 1).acquired for _ in range(3))


def test_rate_limit_slots_decay(storage):
    # one slot decays per second: the three acquisitions fit in that even on a loaded machine (at 10/s they did not)
    storage.create_concurrency_limit("api", 2, slot_decay_per_second=1.0)
    got = [storage.acquire_concurrency_slots(["api"], 1, mode="rate_limit") for _ in range(3)]
    assert [g.acquired for g in got] == [True, True, False]
    assert got[0].lease_id is None and 0 < got[2].retry_after <= 1.0
    time.sleep(got[2].retry_after + 0.05)  # one slot decayed
    assert storage.acquire_concurrency_slots(["api"], 1, mode="rate_limit").acquired
    storage.create_concurrency_limit("flat", 2)
    with pytest.raises(ConfigurationError, match="slot decay"):
        storage.acquire_concurrency_slots(["flat"], 1, mode="rate_limit")


def test_an_expired_lease_gives_its_slots_back(storage):
    storage.create_concurrency_limit("db", 1)
    held = storage.acquire_concurrency_slots(["db"], 1, lease_seconds=0.3, holder={"type": "task_run", "id": "x"})
    assert not storage.acquire_concurrency_slots(["db"], 1).acquired
    assert storage.read_concurrency_holders([held.limits[0]["id"]])[held.limits[0]["id"]] == [
        {"type": "task_run", "id": "x"}]
    time.sleep(0.4)
    assert storage.read_concurrency_limit("db").active_slots == 0  # what an inspect shows
    again = storage.acquire_concurrency_slots(["db"], 1)
    assert again.acquired
    assert not storage.release_concurrency_slots(held.lease_id)  # it expired: its slots went to `again`
    assert storage.read_concurrency_limit("db").active_slots == 1
    assert storage.renew_concurrency_lease(again.lease_id, 60) and not storage.renew_concurrency_lease(held.lease_id)




def _env(store_url, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), DISTRIBUTARY_HOME=str(tmp_path / "home"),
               DISTRIBUTARY_API_DATABASE_CONNECTION_URL=store_url)
    env.pop("DISTRIBUTARY_API_URL", None)
    return env


@pytest.mark.slow
def test_processes_contending_for_one_limit_never_exceed_it(storage, store_url, tmp_path):
    storage.create_concurrency_limit("db", 2)
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENCY_CONTENDER, str(go), str(tmp_path / f"out{i}"), "4"],
                              env=_env(store_url, tmp_path), cwd=ROOT) for i in range(5)]
    time.sleep(1.0)
    go.touch()
    for p in procs:
        assert p.wait(timeout=180) == 0
    spans = [s for i in range(5) for s in json.loads((tmp_path / f"out{i}").read_text())]
    assert len(spans) == 20  # every holder got its turn
    assert max_overlap(spans) == 2  # the limit was used, and never exceeded
    assert storage.read_concurrency_limit("db").active_slots == 0  # all given back


HOLDER = textwrap.dedent("""
    import sys, time
    from distributary.concurrency.sync import concurrency
    with concurrency("db", lease_duration=float(sys.argv[1])):
        print("held", flush=True)
        time.sleep(600)
""")


@pytest.mark.slow
def test_a_sigkilled_holders_slots_come_back_when_its_lease_expires(storage, store_url, tmp_path, monkeypatch):
    from distributary.concurrency.sync import concurrency
    from distributary.runstore import storage as st

    storage.create_concurrency_limit("db", 1)
    monkeypatch.setenv("DISTRIBUTARY_API_DATABASE_CONNECTION_URL", store_url)
    st.reset()
    p = subprocess.Popen([sys.executable, "-c", HOLDER, "1.5"], env=_env(store_url, tmp_path), cwd=ROOT,
                         stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert p.stdout.readline().strip() == "held"
        time.sleep(2.0)  # longer than the lease: the holder's renewals keep it
        with pytest.raises(AcquireConcurrencySlotTimeoutError):
            with concurrency("db", timeout_seconds=0.5):
                pass
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        t0 = time.monotonic()
        with concurrency("db", timeout_seconds=10):
            waited = time.monotonic() - t0
            assert storage.read_concurrency_limit("db").active_slots == 1
        assert waited < 3.0  # about the lease's 1.5 s, not forever
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        st.reset()


def test_gcl_and_concurrency_limit_commands(store_env, capsys):
    from distributary.cli import main

    def cli(*args):
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    assert cli("gcl", "create", "github", "--limit", "5", "--slot-decay-per-second", "1.0")[0] == 0
    code, out, _ = cli("gcl", "inspect", "github", "-o", "json")
    got = json.loads(out)
    assert code == 0 and (got["limit"], got["slot_decay_per_second"], got["active"]) == (5, 1.0, True)
    assert cli("gcl", "update", "github", "--limit", "7", "--disable")[0] == 0
    assert json.loads(cli("gcl", "ls", "-o", "json")[1])[0]["limit"] == 7
    assert cli("gcl", "enable", "github")[0] == 0 and json.loads(cli("gcl", "inspect", "github", "-o", "json")[1])["active"]
    assert cli("gcl", "disable", "github")[0] == 0
    assert not json.loads(cli("gcl", "inspect", "github", "-o", "json")[1])["active"]
    assert cli("gcl", "delete", "github")[0] == 0
    code, _, err = cli("gcl", "inspect", "github")
    assert code == 1 and "no concurrency limit named 'github'" in err
    assert cli("gcl", "create", "x")[0] == 2  # --limit is required

    assert cli("concurrency-limit", "create", "database", "2")[0] == 0
    code, out, _ = cli("concurrency-limit", "inspect", "database", "-o", "json")
    assert code == 0 and (json.loads(out)["tag"], json.loads(out)["concurrency_limit"]) == ("database", 2)
    assert [c["tag"] for c in json.loads(cli("concurrency-limit", "ls", "-o", "json")[1])] == ["database"]
    assert [g["name"] for g in json.loads(cli("gcl", "ls", "-o", "json")[1])] == ["tag:database"]  # one mechanism
    assert cli("concurrency-limit", "reset", "database")[0] == 0
    assert cli("concurrency-limit", "delete", "database")[0] == 0
    assert cli("concurrency-limit", "inspect", "database")[0] == 1


CLAIMER = textwrap.dedent("""
    import json, os, sys, time
    from distributary.runstore.storage import SqlRunStorage
    url, go, ids = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    st = SqlRunStorage(url=url)
    while not os.path.exists(go):
        time.sleep(0.005)
    print(json.dumps([rid for rid in ids if st.claim_flow_run(rid, worker_name=str(os.getpid()))]))
""")


@pytest.mark.slow
def test_processes_claiming_runs_never_exceed_the_deployment_or_pool_limit(storage, store_url, tmp_path):
    storage.create_work_pool("pool", concurrency_limit=2)
    capped = storage.create_deployment(flow_name="f", name="capped", concurrency_limit=3)
    pooled = storage.create_deployment(flow_name="f", name="pooled", work_pool_name="pool")
    runs = [str(storage.create_flow_run_from_deployment(d.id).id) for d in (capped, pooled) for _ in range(30)]
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, store_url, str(go), json.dumps(runs[i::4] + runs)],
                              env=_env(store_url, tmp_path), cwd=ROOT, stdout=subprocess.PIPE, text=True)
             for i in range(4)]
    time.sleep(1.0)
    go.touch()
    claimed = [rid for p in procs for rid in json.loads(p.communicate(timeout=180)[0])]
    assert len(claimed) == len(set(claimed)) == 5  # 3 of the capped deployment, 2 of the pool: no more
    assert storage.count_deployment_runs(capped.id, ["PENDING"]) == 3
    assert storage.count_deployment_runs(pooled.id, ["PENDING"]) == 2
    first = next(r for r in claimed if r in runs[:30])
    storage.set_flow_run_state(first, __import__("distributary.states", fromlist=["x"]).Completed())
    assert storage.claim_flow_run(runs[29]) or any(storage.claim_flow_run(r) for r in runs[:30])  # a slot freed
    assert storage.count_deployment_runs(capped.id, ["PENDING"]) == 3
