"""Server benchmarks (issue 12): the real server process on loopback, the figures and their baselines measured in
the same run.

    python benchmarks/bench_server.py ingest [--tasks 100000] [--pg]   # a 10^5-task map reporting through the API
    python benchmarks/bench_server.py filter [--tasks 100000] [--clients 50 --seconds 20] [--pg] [--workers N]

`ingest` runs a flow with a `.map()` of N tasks on threads in a client process with DISTRIBUTARY_API_URL set, and
times from the start of the flow until the server holds every task run and every state (nothing dropped is
checked, not assumed); the baseline is the same flow recording into the embedded SQLite file. `filter` stores N
task runs (and 1,000 flow runs) through the API, then C concurrent clients (asyncio + httpx in their own process,
each its own keep-alive connection) send `POST /api/flow_runs/filter` for S seconds: latency percentiles and
requests/s, twice: with the server's read cache (the same 3 filters polled over and over are answered from memory
while the store is unchanged), then with it off (`DISTRIBUTARY_SERVER_API_READ_CACHE_ENTRIES=0`, the server
restarted on the same store: every answer built anew). The load tool writes its HTTP/1.1 requests on asyncio
streams itself (under a millisecond of CPU a request: an httpx client spent 8 ms a request at 50 clients, more than the server, so it measured itself), and
checks every status and each client's first pages. `--workers` is `distributary server start --workers`
(default: the server's own default, one per core up to 4).
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
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "server"))
sys.path.insert(0, str(ROOT / "tests" / "runstore"))

MAP_CODE = r"""
import sys, time
from distributary import flow, task
from distributary.task_runners import ThreadPoolTaskRunner

@task
def inc(x):
    return x + 1

@flow(name="ingest-bench", task_runner=ThreadPoolTaskRunner(max_workers=8))
def mapped(n):
    return inc.map(range(n)).result()

n = int(sys.argv[1])
t0 = time.time()
out = mapped(n)
assert len(out) == n
print(t0, time.time())
"""


def _server(workdir: Path, pg_url: str | None, workers: int = 0) -> object:
    from api_server import ServerProcess

    env = {"DISTRIBUTARY_API_DATABASE_CONNECTION_URL": pg_url} if pg_url else {}
    env["DISTRIBUTARY_SERVER_WORKERS"] = str(workers)
    return ServerProcess(workdir, env=env).start(timeout=180)


def bench_ingest(n: int, pg: bool, workers: int) -> dict:
    pg_server = None
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        pg_url = baseline_url = None
        if pg:
            from pg_server import PostgresServer

            pg_server = PostgresServer().start()
            pg_url = pg_server.create_database("ingest")
            baseline_url = pg_server.create_database("baseline")
        srv = _server(work / "srv", pg_url, workers)
        try:
            out = {}
            for mode in ("embedded", "api"):
                home = work / f"client-{mode}"
                env = {**os.environ, "PYTHONPATH": str(ROOT), "DISTRIBUTARY_HOME": str(home),
                       "DISTRIBUTARY_LOGGING_LEVEL": "WARNING"}
                env.pop("DISTRIBUTARY_API_URL", None)
                if mode == "api":
                    env["DISTRIBUTARY_API_URL"] = srv.api_url  # type: ignore[attr-defined]
                elif baseline_url:
                    env["DISTRIBUTARY_API_DATABASE_CONNECTION_URL"] = baseline_url
                t0 = time.time()
                proc = subprocess.run([sys.executable, "-c", MAP_CODE, str(n)], env=env,
                                      capture_output=True, text=True, timeout=1800)
                assert proc.returncode == 0, proc.stderr[-3000:]
                started, returned = map(float, proc.stdout.split()[-2:])
                exited = time.time()
                if mode == "api":
                    # every task run and its whole history on the server: nothing dropped
                    with srv.http() as http:  # type: ignore[attr-defined]
                        done = http.post("task_runs/count", json={"task_runs": {"state": {"type": {
                            "any_": ["COMPLETED"]}}}}).json()
                        runs = http.post("task_runs/filter", json={"limit": 5}).json()
                        hist = [len(http.get("task_run_states/", params={"task_run_id": r["id"]}).json())
                                for r in runs]
                    recorded = time.time()
                    assert done == n, f"{done} of {n} task runs on the server"
                    states = n * 3 + 3  # Pending, Running, Completed of each task run and of the flow run
                    out[mode] = {"flow_s": round(returned - started, 2), "until_recorded_s": round(recorded - started, 2),
                                 "process_s": round(exited - t0, 2), "task_runs_on_server": done,
                                 "history_lengths_sampled": hist,
                                 "state_changes_per_s": round(states / (recorded - started))}
                else:
                    out[mode] = {"flow_s": round(returned - started, 2), "process_s": round(exited - t0, 2)}
            out["ratio_api_vs_embedded_process"] = round(out["api"]["process_s"] / out["embedded"]["process_s"], 2)
            out["backend"] = "postgresql" if pg else "sqlite"
            out["tasks"] = n
            return out
        finally:
            srv.stop()  # type: ignore[attr-defined]
            if pg_server is not None:
                pg_server.stop()


LOAD_CODE = r"""
import asyncio, json, sys, time
from urllib.parse import urlsplit

url, clients, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
bodies = [{"limit": 50, "sort": "START_TIME_DESC"},
          {"flow_runs": {"state": {"type": {"any_": ["FAILED"]}}}, "limit": 50},
          {"flows": {"name": {"any_": ["flow-3"]}}, "limit": 50}]
u = urlsplit(url)
requests = []
for b in bodies:
    data = json.dumps(b).encode()
    requests.append(f"POST {u.path.rstrip('/')}/flow_runs/filter HTTP/1.1\r\nHost: {u.netloc}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)

async def client(i, lat, deadline):
    reader, writer = await asyncio.open_connection(u.hostname, u.port)
    k = i
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        writer.write(requests[k % len(requests)])
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        body = await reader.readexactly(length)
        lat.append(time.perf_counter() - t)
        assert head.startswith(b"HTTP/1.1 200"), head + body[:500]
        if k < i + len(requests):  # each client checks its first answers are pages of flow runs
            page = json.loads(body)
            assert isinstance(page, list) and page and "state" in page[0], body[:500]
        k += 1
    writer.close()

async def main():
    lat = []
    deadline = time.perf_counter() + seconds
    await asyncio.gather(*(client(i, lat, deadline) for i in range(clients)))
    lat.sort()
    q = lambda p: round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 1)
    print(json.dumps({"requests": len(lat), "rps": round(len(lat) / seconds), "p50_ms": q(0.5), "p90_ms": q(0.9),
                      "p99_ms": q(0.99), "max_ms": round(lat[-1] * 1000, 1)}))

asyncio.run(main())
"""


def _populate(srv: object, n: int, flow_runs: int = 1000) -> None:
    """`flow_runs` flow runs of 10 flows (a fifth failed) and `n` task runs spread over them, through /ingest."""
    import random
    import uuid

    from distributary.runstore.batch import flow_id_for

    now = time.time()
    flows = {flow_id_for(f"flow-{i}"): {"id": flow_id_for(f"flow-{i}"), "name": f"flow-{i}", "created": now}
             for i in range(10)}
    runs = {}
    for j in range(flow_runs):
        rid, name = str(uuid.uuid4()), f"flow-{j % 10}"
        st = "FAILED" if j % 5 == 0 else "COMPLETED"
        t = now - (flow_runs - j) * 60
        runs[rid] = {"id": rid, "name": f"run-{j}", "tags": ["bench"], "run_count": 1, "start_time": t,
                     "end_time": t + 30, "total_run_time": 30.0, "state_type": st, "state_name": st.title(),
                     "state_message": None, "state_ts": t + 30, "result_ref": None, "created": t,
                     "flow_id": flow_id_for(name), "flow_name": name, "flow_version": None, "parameters": {},
                     "parent_flow_run_id": None, "parent_task_run_id": None, "expected_start_time": t}
    ids = list(runs)
    with srv.http(timeout=300) as http:  # type: ignore[attr-defined]
        assert http.post("ingest", json={"flows": flows, "flow_runs": runs}).status_code == 200
        rng = random.Random(1)
        for start in range(0, n, 20_000):
            trs = {}
            for i in range(start, min(n, start + 20_000)):
                tid, t = str(uuid.uuid4()), now - rng.random() * 3600
                trs[tid] = {"id": tid, "name": f"t-{i}", "tags": [], "run_count": 1, "start_time": t,
                            "end_time": t + 0.01, "total_run_time": 0.01, "state_type": "COMPLETED",
                            "state_name": "Completed", "state_message": None, "state_ts": t + 0.01,
                            "result_ref": None, "created": t, "task_key": "mod.t", "dynamic_key": str(i),
                            "cache_key": None, "flow_run_id": ids[i % len(ids)], "task_inputs": None,
                            "state_history": [["PENDING", "Pending", None, t], ["RUNNING", "Running", None, t],
                                              ["COMPLETED", "Completed", None, t + 0.01]]}
            assert http.post("ingest", json={"task_runs": trs}).status_code == 200
        assert http.post("task_runs/count", json={}).json() == n


def bench_filter(n: int, clients: int, seconds: float, pg: bool, workers: int) -> dict:
    pg_server = None
    with tempfile.TemporaryDirectory() as d:
        pg_url = None
        if pg:
            from pg_server import PostgresServer

            pg_server = PostgresServer().start()
            pg_url = pg_server.create_database("filter")
        srv = _server(Path(d) / "srv", pg_url, workers)
        try:
            _populate(srv, n)
            out = {"backend": "postgresql" if pg else "sqlite", "task_runs_stored": n, "flow_runs_stored": 1000,
                   "workers": workers or "default"}
            # the baseline: one client, the same server, the same run; then the same again with the server's
            # read cache off (restarted on the same store), so every answer is built anew
            for cache in ("on", "off"):
                if cache == "off":
                    srv.stop()  # type: ignore[attr-defined]
                    srv.extra_env["DISTRIBUTARY_SERVER_API_READ_CACHE_ENTRIES"] = "0"  # type: ignore[attr-defined]
                    srv.start(timeout=180)  # type: ignore[attr-defined]
                for c in (1, clients):
                    proc = subprocess.run([sys.executable, "-c", LOAD_CODE, srv.api_url, str(c), str(seconds)],  # type: ignore[attr-defined]
                                          capture_output=True, text=True, timeout=seconds + 300)
                    assert proc.returncode == 0, proc.stderr[-3000:]
                    out[f"cache_{cache}_clients_{c}"] = json.loads(proc.stdout.strip().splitlines()[-1])
            return out
        finally:
            srv.stop()  # type: ignore[attr-defined]
            if pg_server is not None:
                pg_server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["ingest", "filter"])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--pg", action="store_true", help="the server on PostgreSQL 15 instead of SQLite")
    parser.add_argument("--workers", type=int, default=0, help="server processes (0: the server's default)")
    args = parser.parse_args()
    if args.what == "ingest":
        result = bench_ingest(args.tasks, args.pg, args.workers)
    else:
        result = bench_filter(args.tasks, args.clients, args.seconds, args.pg, args.workers)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
