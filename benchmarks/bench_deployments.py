"""Deployment benchmarks (issue 13). Each part prints its figures and the baseline measured in the same run.

    python benchmarks/bench_deployments.py schedule [--deployments 1000]   # scheduler passes over cron deployments
    python benchmarks/bench_deployments.py latency  [--runs 10]           # serve(): scheduled time -> Running
    python benchmarks/bench_deployments.py workers  [--runs 500 --workers 3]  # 3 process workers drain a queue

`schedule` registers N deployments with cron schedules in a fresh SQLite run store and times one scheduler pass
over all of them (the runs ahead: at least 3 each, all within an hour), then a second pass (steady state: nothing
new to create); the baseline is croniter computing the same dates alone. `latency` serves one deployment with an
interval schedule of 3 s and reads, for each run, how long after its scheduled time it was Running (the run's
own process records that; a fresh Python process per run). `workers` queues N runs of a trivial flow on a
process pool, starts W `distributary worker start` processes and times until every run is Completed: runs per
second and the distribution of start latency (Running minus created); the baseline is the same number of bare
`python -c "import distributary"` processes started W at a time.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

FLOW = textwrap.dedent('''
    import sys
    from distributary import flow

    @flow
    def tick(i: int = 0):
        return i

    if __name__ == "__main__":
        tick.serve("every-3s", interval=3)
''')


def _home(d: str) -> None:
    os.environ["DISTRIBUTARY_HOME"] = d
    os.environ.pop("DISTRIBUTARY_API_DATABASE_CONNECTION_URL", None)
    os.environ.pop("DISTRIBUTARY_API_URL", None)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def _schedule_pass(n: int, one_call: bool) -> dict:
    """N cron deployments in a fresh SQLite store; a first and a second (steady) scheduler pass, either one
    `schedule_many` call over all of them (the server's scheduler) or one `schedule_runs` call per deployment
    (what a serve() process or worker does for its own deployments)."""
    from distributary.runstore.storage import SqlRunStorage
    from distributary.schedules import Cron

    with tempfile.TemporaryDirectory() as d:
        st = SqlRunStorage(url=f"sqlite:///{d}/runs.db")
        ids = [st.create_deployment(flow_name=f"flow-{i % 50}", name=f"dep-{i}", entrypoint="f.py:f",
                                    schedules=[Cron(c)]).id for i, c in enumerate(_crons(n))]
        now = dt.datetime.now(dt.timezone.utc)

        def one_pass() -> int:
            return st.schedule_many(ids, now=now) if one_call else sum(st.schedule_runs(i, now=now) for i in ids)

        t0 = time.perf_counter()
        made = one_pass()
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = one_pass()
        second = time.perf_counter() - t0
        every = all(st.read_due_runs([i], before=time.time() + 86400 * 2, limit=1) for i in ids)
        st.engine.dispose()
    return {"runs_created": made, "first_pass_s": round(first, 3), "second_pass_s": round(second, 3),
            "second_pass_new_runs": again, "first_pass_ms_per_deployment": round(first / n * 1e3, 2),
            "every_deployment_scheduled": every}


def _crons(n: int) -> list[str]:
    return [f"{i % 60} {(i // 60) % 24} * * *" if i % 2 else f"*/{5 + i % 10} * * * *" for i in range(n)]


def bench_schedule(n: int) -> dict:
    from croniter import croniter

    now = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    for c in _crons(n):  # baseline: the dates alone, no database
        it = croniter(c, now)
        [it.get_next(dt.datetime) for _ in range(3)]
    base = time.perf_counter() - t0
    return {"deployments": n, "one_pass_over_all": _schedule_pass(n, True),
            "one_call_per_deployment": _schedule_pass(n, False), "croniter_only_s": round(base, 4)}


def bench_latency(runs: int) -> dict:
    from distributary.runstore import get_storage

    with tempfile.TemporaryDirectory() as d:
        _home(d)
        (Path(d) / "tick.py").write_text(FLOW)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.Popen([sys.executable, "tick.py"], cwd=d, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            st = get_storage()
            deadline = time.monotonic() + 60 + runs * 10
            while True:
                done = [r for r in st.read_flow_runs(limit=1000) if r.state_type == "COMPLETED"]
                if len(done) >= runs or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        lat = sorted((r.start_time - r.expected_start_time).total_seconds() for r in done[:runs]
                     if r.start_time and r.expected_start_time)
    return {"runs": len(lat), "start_latency_s": {"p50": round(pct(lat, 0.5), 3), "p90": round(pct(lat, 0.9), 3),
                                                  "max": round(max(lat), 3), "min": round(min(lat), 3)},
            "within_2s": sum(1 for x in lat if x <= 2.0)}


def bench_workers(runs: int, workers: int) -> dict:
    from distributary.runstore import get_storage

    with tempfile.TemporaryDirectory() as d:
        _home(d)
        (Path(d) / "tick.py").write_text(FLOW)
        env = dict(os.environ, PYTHONPATH=str(ROOT), DISTRIBUTARY_RUNNER_POLL_INTERVAL="0.2")
        st = get_storage()
        st.create_work_pool("bench")
        dep = st.create_deployment(flow_name="tick", name="queued", entrypoint="tick.py:tick", path=d,
                                   work_pool_name="bench")
        for _ in range(runs):
            st.create_flow_run_from_deployment(dep.id)
        t0 = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-m", "distributary.cli", "worker", "start", "--pool", "bench",
                                   "--limit", "2"], cwd=d, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for _ in range(workers)]
        try:
            while st.count_deployment_runs(dep.id, ["COMPLETED", "CRASHED", "FAILED"]) < runs:
                time.sleep(0.5)
            wall = time.perf_counter() - t0
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                p.wait(60)
        got = st.read_flow_runs(limit=runs + 10)
        completed = sum(1 for r in got if r.state_type == "COMPLETED")
        lat = [(r.start_time - r.created).total_seconds() for r in got if r.start_time and r.created]
    # baseline: the same number of bare interpreter starts importing distributary, `workers * 2` at a time
    t0 = time.perf_counter()
    pending: list[subprocess.Popen] = []
    for _ in range(runs):
        pending.append(subprocess.Popen([sys.executable, "-c", "import distributary, distributary.runstore.storage"],
                                        env=dict(os.environ, PYTHONPATH=str(ROOT))))
        if len(pending) >= workers * 2:
            pending.pop(0).wait()
    for p in pending:
        p.wait()
    base = time.perf_counter() - t0
    return {"runs": runs, "workers": workers, "completed": completed, "wall_s": round(wall, 1),
            "runs_per_s": round(runs / wall, 2), "bare_process_starts_s": round(base, 1),
            "ratio_to_bare_starts": round(wall / base, 2),
            "start_latency_after_created_s": {"p50": round(pct(lat, 0.5), 2), "p90": round(pct(lat, 0.9), 2),
                                              "max": round(max(lat), 2)}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("part", choices=["schedule", "latency", "workers"])
    ap.add_argument("--deployments", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--workers", type=int, default=3)
    a = ap.parse_args()
    if a.part == "schedule":
        out = bench_schedule(a.deployments)
    elif a.part == "latency":
        out = bench_latency(a.runs or 10)
    else:
        out = bench_workers(a.runs or 500, a.workers)
    print(json.dumps(out, indent=2))
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / f"bench_deployments_{a.part}.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
