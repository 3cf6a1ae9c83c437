"""Filling a run store quickly with synthetic flow runs and task runs, by bulk writes through the run store's own
`write(Batch)` (what the sink does), for the UI's paging tests and its scale benchmark (benchmarks/bench_ui.py)."""
from __future__ import annotations

import random
import time
import uuid
from collections.abc import Sequence
from typing import Any

from distributary.runstore.batch import Batch, flow_id_for

STATES = {"COMPLETED": "Completed", "FAILED": "Failed", "RUNNING": "Running", "PENDING": "Pending",
          "CRASHED": "Crashed"}


def flow_runs(storage: Any, n: int, flow: str = "synthetic", tags: Sequence[str] = (), start: float | None = None,
              spacing: float = 1.0, states: Sequence[str] = ("COMPLETED",), batch_size: int = 20_000) -> list[str]:
    """`n` finished flow runs of `flow`, one every `spacing` seconds from `start` (default: ending now); the state
    of each is drawn in turn from `states`. Their ids."""
    start = time.time() - n * spacing if start is None else start
    fid = flow_id_for(flow)
    ids = []
    for lo in range(0, n, batch_size):
        b = Batch()
        b.flows[fid] = {"id": fid, "name": flow, "created": start}
        for i in range(lo, min(n, lo + batch_size)):
            rid = str(uuid.uuid4())
            ids.append(rid)
            t0 = start + i * spacing
            s = states[i % len(states)]
            b.flow_runs[rid] = {
                "id": rid, "name": f"{flow}-{i:06d}", "flow_id": fid, "flow_name": flow, "flow_version": None,
                "parameters": {"i": i}, "tags": sorted(tags), "parent_task_run_id": None, "parent_flow_run_id": None,
                "run_count": 1, "expected_start_time": t0, "start_time": t0, "end_time": t0 + 0.5,
                "total_run_time": 0.5, "state_type": s, "state_name": STATES.get(s, s.title()),
                "state_message": None, "state_ts": t0 + 0.5, "result_ref": None, "created": t0}
            b.states += [{"run_id": rid, "type": "RUNNING", "name": "Running", "message": None, "timestamp": t0,
                          "result_ref": None},
                         {"run_id": rid, "type": s, "name": STATES.get(s, s.title()), "message": None,
                          "timestamp": t0 + 0.5, "result_ref": None}]
        storage.write(b)
    return ids


def task_runs(storage: Any, flow_run_id: str, n: int, task_keys: Sequence[str] = ("etl.extract", "etl.transform",
              "etl.load"), start: float | None = None, duration: float = 60.0, fail_every: int = 0,
              batch_size: int = 20_000, seed: int = 0, upstream: Sequence[str] = ()) -> list[str]:
    """`n` task runs of one flow run spread over `duration` seconds from `start`, each with a full state history
    (Pending, Running, then Completed or, every `fail_every`-th, Failed); with `upstream` task run ids, run i
    took an input from `upstream[i % len(upstream)]`. Their ids."""
    ids = []
    rng = random.Random(seed)
    start = time.time() - duration if start is None else start
    for lo in range(0, n, batch_size):
        b = Batch()
        for i in range(lo, min(n, lo + batch_size)):
            key = task_keys[i % len(task_keys)]
            t0 = start + duration * i / max(n, 1)
            t1 = t0 + rng.uniform(0.001, duration / 20)
            failed = fail_every and i % fail_every == fail_every - 1
            s, name = ("FAILED", "Failed") if failed else ("COMPLETED", "Completed")
            tid = str(uuid.uuid4())
            ids.append(tid)
            inputs = {"x": [{"input_type": "task_run", "id": upstream[i % len(upstream)]}]} if upstream else None
            b.task_runs[tid] = {
                "id": tid, "name": f"{key.rsplit('.', 1)[-1]}-{i}", "tags": [], "run_count": 1, "start_time": t0,
                "end_time": t1, "total_run_time": t1 - t0, "state_type": s, "state_name": name,
                "state_message": "boom" if failed else None, "state_ts": t1, "result_ref": None, "created": t0,
                "task_key": key, "dynamic_key": str(i), "cache_key": None, "flow_run_id": flow_run_id,
                "task_inputs": inputs,
                "state_history": [["PENDING", "Pending", None, t0], ["RUNNING", "Running", None, t0],
                                  [s, name, "boom" if failed else None, t1]]}
        storage.write(b)
    return ids
