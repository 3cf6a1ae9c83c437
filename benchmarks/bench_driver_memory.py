"""Driver peak memory per task run of a `.map()` (issue 14), on threads, Dask and Ray.

    python benchmarks/bench_driver_memory.py [--sizes 10000] [--runners threads,dask,ray]

For each runner: a flow doing `inc.map(range(N)).result()` runs once to warm up (imports, the cluster, the run
store's file), then once more under `tracemalloc`; the figure is the traced peak during that second run, over N:
the Python allocations of the driver process (records, calls, futures, states, values, the run-store sink's
rows), not the C++ memory of Ray's core worker nor the worker processes. Dask: a LocalCluster of 2 worker
processes (its scheduler runs in this process and is traced too); Ray: a local instance of 2 CPUs. Only public
API is used, so the same script measures an older checkout (`PYTHONPATH=<checkout> python ...`): compare the
figures of two checkouts taken in one session.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
import tracemalloc

os.environ.setdefault("DISTRIBUTARY_LOGGING_LEVEL", "WARNING")
for _k, _v in (("RAY_AUTH_MODE", "disabled"), ("RAY_USAGE_STATS_ENABLED", "0")):
    os.environ.setdefault(_k, _v)

from distributary import flow, task  # noqa: E402


@task
def inc(x: int) -> int:
    return x + 1


def _runner(name: str, cluster: dict) -> object:
    if name == "threads":
        from distributary.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=8)
    if name == "dask":
        if "dask" not in cluster:
            from distributed import LocalCluster

            cluster["dask"] = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           host="127.0.0.1", dashboard_address=None)
        from distributary.runners.dask import DaskTaskRunner

        return DaskTaskRunner(address=cluster["dask"].scheduler_address)
    if name == "ray":
        import ray

        if not ray.is_initialized():
            ray.init(num_cpus=2, object_store_memory=512 * 2**20, include_dashboard=False, log_to_driver=False)
        cluster["ray"] = ray
        from distributary.runners.ray import RayTaskRunner

        return RayTaskRunner()
    raise SystemExit(f"unknown runner {name!r}: threads, dask or ray")


def measure(name: str, n: int, cluster: dict) -> dict:
    @flow(task_runner=_runner(name, cluster))
    def fan_out(n: int) -> int:
        return len(inc.map(range(n)).result())

    assert fan_out(n) == n  # warm-up
    gc.collect()
    tracemalloc.start()
    t0 = time.perf_counter()
    assert fan_out(n) == n
    wall = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"runner": name, "n": n, "wall_s": round(wall, 3), "peak_mib": round(peak / 2**20, 1),
            "bytes_per_task_run": round(peak / n)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="10000")
    p.add_argument("--runners", default="threads,dask,ray")
    args = p.parse_args()
    cluster: dict = {}
    out = []
    try:
        for name in args.runners.split(","):
            for n in (int(float(s)) for s in args.sizes.split(",")):
                r = measure(name, n, cluster)
                print(f"{r['runner']:8s} N={r['n']:>7,}  peak {r['peak_mib']:7.1f} MiB  "
                      f"{r['bytes_per_task_run']:>6,} B/task run  (traced run {r['wall_s']} s)", flush=True)
                out.append(r)
    finally:
        if "dask" in cluster:
            cluster["dask"].close()
        if "ray" in cluster:
            cluster["ray"].shutdown()
    print(json.dumps(out), file=sys.stderr)


if __name__ == "__main__":
    main()
