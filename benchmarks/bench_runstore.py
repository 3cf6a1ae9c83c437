"""Run-store benchmarks (issue 11). Each part prints its figures and the baseline measured in the same run.

    python benchmarks/bench_runstore.py writes   [--tasks 100000]      # state changes/s into SQLite, DB size
    python benchmarks/bench_runstore.py map      [--tasks 100000]      # a .map() on threads, recording on vs off
    python benchmarks/bench_runstore.py procs    [--procs 8 --tasks 10000] [--url postgresql://...] [--synthetic]
    python benchmarks/bench_runstore.py startup  [--repeat 10]         # one-task flow, fresh process, on vs off

`writes` feeds the sink the events of one flow run with N task runs (created, Running, Completed: 3 state changes
each with the initial Pending) and times until everything is written and committed. `procs` starts P processes at
once, each running a flow with a map of N tasks against one database, then checks that every task run and every
state is there and that no process logged "database is locked".
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "runstore"))


def bench_writes(n: int) -> dict:
    from events import flow_with_tasks

    from distributary.runstore.sink import RunStoreSink
    from distributary.runstore.storage import SqlRunStorage

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "runs.db"
        storage = SqlRunStorage(url=f"sqlite:///{path}")
        fr, trs, ev = flow_with_tasks(n)
        states = sum(1 for e in ev if e[0] == "state_changed") + n + 1  # + the initial Pending of each run
        sink = RunStoreSink(storage=storage, spool_dir=Path(d) / "spool")
        t0 = time.perf_counter()
        sink.handle(ev)
        assert sink.flush(600)
        dt = time.perf_counter() - t0
        sink.close()
        assert storage.count_states() == states
        storage.engine.dispose()
        size = sum(p.stat().st_size for p in Path(d).glob("runs.db*"))
    return {"task_runs": n, "state_changes": states, "seconds": round(dt, 3),
            "state_changes_per_s": round(states / dt), "db_bytes": size,
            "db_mb_per_1e5_task_runs": round(size / n * 1e5 / 2**20, 1)}


MAP_CODE = r"""
import os, sys, time
from distributary import flow, task
from distributary.task_runners import ThreadPoolTaskRunner

@task
def inc(x):
    return x + 1

@flow(task_runner=ThreadPoolTaskRunner(max_workers=8))
def mapped(n):
    return inc.map(range(n)).result()

n = int(sys.argv[1])
t0 = time.perf_counter()
out = mapped(n)
dt = time.perf_counter() - t0
assert len(out) == n
print(dt)
"""


def _run_map(n: int, on: bool, home: str) -> float:
    env = {**os.environ, "DISTRIBUTARY_HOME": home, "DISTRIBUTARY_RUNSTORE_ENABLED": "true" if on else "false",
           "PYTHONPATH": str(ROOT), "DISTRIBUTARY_LOGGING_LEVEL": "WARNING"}
    out = subprocess.run([sys.executable, "-c", MAP_CODE, str(n)], capture_output=True, text=True, env=env,
                         timeout=1800)
    if out.returncode:
        raise SystemExit(out.stderr)
    return float(out.stdout.strip().splitlines()[-1])


def bench_map(n: int, repeat: int) -> dict:
    with tempfile.TemporaryDirectory() as home:
        from distributary.runstore.storage import SqlRunStorage

        # the database exists beforehand (created and migrated on first use: a one-off, not per flow)
        SqlRunStorage(url=f"sqlite:///{home}/runs.db").engine.dispose()
        on, off = [], []
        for _ in range(repeat):  # alternate, so load drifts hit both alike
            off.append(_run_map(n, False, home))
            on.append(_run_map(n, True, home))
        st = SqlRunStorage(url=f"sqlite:///{home}/runs.db")
        count = st.count_task_runs()
        states = st.count_states()
        st.engine.dispose()
    return {"tasks": n, "off_s": [round(x, 3) for x in off], "on_s": [round(x, 3) for x in on],
            "ratio_best": round(min(on) / min(off), 3), "task_runs_recorded": count, "states_recorded": states,
            "expected_task_runs": n * repeat}


PROC_CODE = r"""
import logging, sys, time
from distributary import flow, task
from distributary.task_runners import ThreadPoolTaskRunner

locked = []
class Catch(logging.Handler):
    def emit(self, record):
        if "locked" in record.getMessage():
            locked.append(record.getMessage())
logging.getLogger("distributary").addHandler(Catch())

@task
def inc(x):
    return x + 1

@flow(task_runner=ThreadPoolTaskRunner(max_workers=4))
def mapped(n):
    return inc.map(range(n)).result()

n = int(sys.argv[1])
t0 = time.perf_counter()
mapped(n)
print(time.perf_counter() - t0, len(locked))
"""


SYNTH_CODE = r"""
import logging, sys, time
sys.path.insert(0, sys.argv[2])
from events import flow_with_tasks
from distributary.runstore.sink import RunStoreSink

locked = []
class Catch(logging.Handler):
    def emit(self, record):
        if "locked" in record.getMessage():
            locked.append(record.getMessage())
logging.getLogger("distributary").addHandler(Catch())
n = int(sys.argv[1])
fr, trs, ev = flow_with_tasks(n)
t0 = time.perf_counter()
sink = RunStoreSink()
sink.handle(ev)
assert sink.flush(600)
print(time.perf_counter() - t0, len(locked))
"""


def bench_procs(procs: int, n: int, url: str | None, synthetic: bool = False) -> dict:
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "DISTRIBUTARY_HOME": home, "PYTHONPATH": str(ROOT),
               "DISTRIBUTARY_LOGGING_LEVEL": "WARNING"}
        if url:
            env["DISTRIBUTARY_API_DATABASE_CONNECTION_URL"] = url
        t0 = time.perf_counter()
        argv = ([sys.executable, "-c", SYNTH_CODE, str(n), str(ROOT / "tests" / "runstore")] if synthetic
                else [sys.executable, "-c", PROC_CODE, str(n)])
        ps = [subprocess.Popen(argv, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env) for _ in range(procs)]
        outs = [p.communicate(timeout=1800) for p in ps]
        wall = time.perf_counter() - t0
        bad = [err for p, (out, err) in zip(ps, outs, strict=True) if p.returncode]
        if bad:
            raise SystemExit(bad[0])
        locked_logs = sum(int(o.split()[1]) for o, _ in outs)
        locked_stderr = sum(e.count("database is locked") for _, e in outs)
        from distributary.runstore.storage import SqlRunStorage

        st = SqlRunStorage(url=url or f"sqlite:///{home}/runs.db")
        count = st.count_task_runs()
        flows = len(st.read_flow_runs())
        st.engine.dispose()
    return {"processes": procs, "tasks_each": n, "synthetic_events": synthetic, "wall_s": round(wall, 2),
            "flow_runs": flows,
            "task_runs_recorded": count, "expected": procs * n,
            "database_is_locked": locked_logs + locked_stderr}


START_CODE = r"""
from distributary import flow, task

@task
def one():
    return 1

@flow
def f():
    return one()

f()
"""


def bench_startup(repeat: int) -> dict:
    with tempfile.TemporaryDirectory() as home:
        from distributary.runstore.storage import SqlRunStorage

        SqlRunStorage(url=f"sqlite:///{home}/runs.db").engine.dispose()
        res: dict[str, list[float]] = {"off": [], "on": []}
        for i in range(repeat + 1):
            for mode in ("off", "on"):
                env = {**os.environ, "DISTRIBUTARY_HOME": home, "PYTHONPATH": str(ROOT),
                       "DISTRIBUTARY_RUNSTORE_ENABLED": "true" if mode == "on" else "false"}
                t0 = time.perf_counter()
                subprocess.run([sys.executable, "-c", START_CODE], check=True, env=env, capture_output=True)
                if i:  # the first round warms the file cache and creates the database
                    res[mode].append(time.perf_counter() - t0)
    med = {k: sorted(v)[len(v) // 2] for k, v in res.items()}
    return {"repeat": repeat, "off_median_s": round(med["off"], 3), "on_median_s": round(med["on"], 3),
            "ratio": round(med["on"] / med["off"], 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", choices=["writes", "map", "procs", "startup"])
    p.add_argument("--tasks", type=int, default=None)
    p.add_argument("--procs", type=int, default=8)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--url", default=None, help="database URL for `procs` (default: a fresh SQLite file)")
    p.add_argument("--pg", action="store_true", help="`procs`: start a PostgreSQL 15 server for the run")
    p.add_argument("--synthetic", action="store_true",
                   help="`procs`: each process feeds its sink the events of a flow run instead of running one")
    a = p.parse_args()
    if a.part == "writes":
        out = bench_writes(a.tasks or 100_000)
    elif a.part == "map":
        out = bench_map(a.tasks or 100_000, a.repeat)
    elif a.part == "procs":
        if a.pg:
            from pg_server import PostgresServer

            server = PostgresServer().start()
            try:
                out = bench_procs(a.procs, a.tasks or 10_000, server.create_database("bench"), a.synthetic)
            finally:
                server.stop()
        else:
            out = bench_procs(a.procs, a.tasks or 10_000, a.url, a.synthetic)
    else:
        out = bench_startup(a.repeat if a.repeat > 3 else 10)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
