"""At-least-once delivery made exactly-once in the store: `POST /api/ingest` may get a batch again (the HTTP sink
resends one whose answer it never saw; a spooled batch is replayed by the next process after a crash), and a batch
stored twice adds no flow run, task run, state-history entry, log line or artifact."""
from __future__ import annotations

import shutil
import time
import uuid

from distributary.runstore.batch import flow_id_for

QUICK_FLOW = """
from distributary import flow, task, get_run_logger

@task
def one():
    get_run_logger().info("one ran")
    return 1

@flow(name="resent")
def resent():
    get_run_logger().info("flow says hi")
    return one()

print(resent())
"""


def _batch(rid: str, tid: str, t: float) -> dict:
    fid = flow_id_for("resent-by-hand")
    history = [["PENDING", "Pending", None, t], ["RUNNING", "Running", None, t + 1],
               ["COMPLETED", "Completed", None, t + 2]]
    return {
        "flows": {fid: {"id": fid, "name": "resent-by-hand", "created": t}},
        "flow_runs": {rid: {"id": rid, "name": "once", "flow_id": fid, "flow_name": "resent-by-hand",
                            "state_type": "COMPLETED", "state_name": "Completed", "state_ts": t + 3, "created": t,
                            "start_time": t, "end_time": t + 3, "total_run_time": 3.0, "run_count": 1,
                            "tags": ["x"]}},
        "task_runs": {tid: {"id": tid, "name": "step-0", "task_key": "m.step", "dynamic_key": "0",
                            "flow_run_id": rid, "state_type": "COMPLETED", "state_name": "Completed",
                            "state_ts": t + 2, "created": t, "run_count": 1, "start_time": t + 1,
                            "end_time": t + 2, "total_run_time": 1.0, "state_history": history}},
        "states": [{"run_id": rid, "type": s, "name": s.title(), "message": None, "timestamp": t + i}
                   for i, s in enumerate(["PENDING", "RUNNING", "COMPLETED"])],
        "logs": [{"name": "me", "level": 20, "message": f"line {i}", "timestamp": t + i / 10, "flow_run_id": rid,
                  "task_run_id": None} for i in range(3)],
        "artifacts": {str(uuid.uuid5(uuid.NAMESPACE_URL, rid)): {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, rid)), "key": "once-report", "type": "markdown", "data": "hi",
            "flow_run_id": rid, "created": t, "updated": t}},
    }


def _stored(http, rid: str, tid: str) -> dict:
    return {"flow_runs": http.post("flow_runs/count", json={}).json(),
            "task_runs": http.post("task_runs/count", json={}).json(),
            "flow_run_states": [s["type"] for s in http.get("flow_run_states/", params={"flow_run_id": rid}).json()],
            "task_run_states": len(http.get("task_run_states/", params={"task_run_id": tid}).json()),
            "logs": [lg["message"] for lg in http.post("logs/filter", json={}).json()],
            "artifacts": len(http.post("artifacts/filter", json={}).json())}


def test_a_batch_sent_again_is_stored_once(any_server):
    rid, tid, t = str(uuid.uuid4()), str(uuid.uuid4()), time.time() - 60
    batch = _batch(rid, tid, t)
    with any_server.http() as http:
        for _ in range(3):
            assert http.post("ingest", json=batch).status_code == 200
        assert _stored(http, rid, tid) == {
            "flow_runs": 1, "task_runs": 1, "flow_run_states": ["PENDING", "RUNNING", "COMPLETED"],
            "task_run_states": 3, "logs": ["line 0", "line 1", "line 2"], "artifacts": 1}
        # a resent batch that grew meanwhile (the sink merges newer records into what it resends): only the new
        # rows are added
        batch["logs"].append({"name": "me", "level": 20, "message": "line 3", "timestamp": t + 0.3,
                              "flow_run_id": rid, "task_run_id": None})
        batch["states"].append({"run_id": rid, "type": "COMPLETED", "name": "Completed", "message": "again",
                                "timestamp": t + 5})
        assert http.post("ingest", json=batch).status_code == 200
        got = _stored(http, rid, tid)
        assert got["logs"] == ["line 0", "line 1", "line 2", "line 3"]
        assert got["flow_run_states"] == ["PENDING", "RUNNING", "COMPLETED", "COMPLETED"]


def test_a_spooled_batch_replayed_twice_after_a_crash_is_stored_once(server):
    server.stop()
    first = server.run_flow(QUICK_FLOW)  # the server is away: the records end up in the client's spool
    assert "spooled" in first.stderr
    spool = server.client_home / "spool"
    (spooled,) = spool.glob("*.batch")
    # a process that wrote this batch and crashed before deleting it: the next one replays it again
    shutil.copy(spooled, spool / f"{time.time():.6f}-1-copy.batch")
    server.start()
    server.run_flow(QUICK_FLOW)  # replays both copies, then records its own run
    assert not list(spool.glob("*.batch"))
    with server.http() as http:
        runs = http.post("flow_runs/filter", json={"sort": "START_TIME_ASC"}).json()
        assert [r["state_type"] for r in runs] == ["COMPLETED", "COMPLETED"]
        assert http.post("task_runs/count", json={}).json() == 2
        for run in runs:
            states = http.get("flow_run_states/", params={"flow_run_id": run["id"]}).json()
            assert [s["type"] for s in states] == ["PENDING", "RUNNING", "COMPLETED"]
            logs = http.post("logs/filter", json={"logs": {"flow_run_id": {"any_": [run["id"]]}}}).json()
            messages = [lg["message"] for lg in logs]
            assert messages.count("flow says hi") == 1 and messages.count("one ran") == 1
            assert len({(lg["message"], lg["timestamp"]) for lg in logs}) == len(logs)
