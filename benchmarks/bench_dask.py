"""distributary on Dask against raw Dask in the same run: N trivial tasks on a 2-worker LocalCluster (processes).

    python benchmarks/bench_dask.py [--sizes 1000,10000,100000] [--repeat 3] [--no-memory] [--batch-size 1]
        [--per-item-max 10000]

ours: a flow with DaskTaskRunner(address=<the cluster>) doing `inc.map(range(N)).result()` (each call includes
connecting the flow run's client, packing, one task-run record with its own states per element, and fetching
the values). Three raw baselines on a client kept open: per item, `client.map(inc, range(N), pure=False)` +
`client.gather(...)`; hand-batched, `client.map(process_chunk, chunks)` over CHUNKS chunks + gather + flatten
(what an experienced Dask user writes for many small items); and `dask.bag.from_sequence(range(N),
npartitions=CHUNKS).map(inc)` computed on the same client.
Wall time is the median of --repeat runs; driver peak memory is tracemalloc's peak in one more, untimed run of
each (it traces every thread of this process, so the client's and, with a LocalCluster, the scheduler's
allocations count for both). Targets: ours <= 1.2x the per-item raw wall time at N = 10^4 and 10^5, <= 1.5x
driver memory; ours <= 1.2x the hand-batched raw wall time at N = 10^4 and 10^5.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("DISTRIBUTARY_LOGGING_LEVEL", "WARNING")

from common import Measurement, measure, save_json, table  # noqa: E402

from distributary import flow, task  # noqa: E402


def inc(x: int) -> int:
    return x + 1


inc_task = task(inc)


def make_flow(address: str, batch_size: int | None = None):
    from distributary.runners.dask import DaskTaskRunner

    @flow(task_runner=DaskTaskRunner(address=address, batch_size=batch_size))
    def fan_out(n: int) -> int:
        return len(inc_task.map(range(n)).result())

    return fan_out


def raw(client, n: int) -> int:
    futures = client.map(inc, range(n), pure=False)
    out = client.gather(futures)
    del futures
    return len(out)


CHUNKS = 32


def process_chunk(chunk: range) -> list[int]:
    return [inc(x) for x in chunk]


def chunks_of(n: int, k: int = CHUNKS) -> list[range]:
    size = -(-n // k)
    return [range(i, min(n, i + size)) for i in range(0, n, size)]


def raw_batched(client, n: int) -> int:
    futures = client.map(process_chunk, chunks_of(n), pure=False)
    out = [y for part in client.gather(futures) for y in part]
    del futures
    return len(out)


def raw_bag(client, n: int) -> int:
    import dask.bag as db

    return len(client.compute(db.from_sequence(range(n), npartitions=CHUNKS).map(inc)).result())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc runs")
    parser.add_argument("--per-item-max", type=float, default=None,
                        help="run the per-item raw baseline only up to this N (it takes minutes at 10^5)")
    parser.add_argument("--batch-size", type=int, default=None, help="DaskTaskRunner batch_size (1: no packing)")
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address="127.0.0.1:0", worker_dashboard_address="127.0.0.1:0")
    client = Client(cluster)
    fan_out = make_flow(cluster.scheduler_address, args.batch_size)
    rows, records = [], []
    try:
        raw(client, 100)   # warm every path: worker imports, connections
        raw_batched(client, 100)
        raw_bag(client, 100)
        fan_out(100)
        for n in [int(float(s)) for s in args.sizes.split(",")]:
            mem = not args.no_memory
            base = (measure("raw dask client.map+gather", n, lambda n=n: raw(client, n), args.repeat, mem)
                    if args.per_item_max is None or n <= args.per_item_max
                    else Measurement("raw dask client.map+gather (not run)", n, [float("nan")]))
            batched = measure(f"raw dask client.map over {CHUNKS} chunks", n, lambda n=n: raw_batched(client, n),
                              args.repeat, mem)
            bag = measure(f"dask.bag ({CHUNKS} partitions)", n, lambda n=n: raw_bag(client, n), args.repeat, mem)
            ours = measure(f"distributary DaskTaskRunner(batch_size={args.batch_size})", n, lambda n=n: fan_out(n),
                           args.repeat, mem)
            mem_ratio = ours.peak_bytes / base.peak_bytes if base.peak_bytes else float("nan")
            rows.append([n, base.wall, ours.wall, ours.wall / base.wall, base.per_task_us, ours.per_task_us,
                         (ours.wall - base.wall) / n * 1e6, (base.peak_bytes or 0) / 2**20,
                         (ours.peak_bytes or 0) / 2**20, mem_ratio, batched.wall, ours.wall / batched.wall,
                         bag.wall, ours.wall / bag.wall, (batched.peak_bytes or 0) / 2**20])
            records += [base.summary(), batched.summary(), bag.summary(), ours.summary()]
            print(table(rows[-1:], HEADERS), flush=True)
    finally:
        client.close()
        cluster.close()
    print()
    print(table(rows, HEADERS))
    for r in rows:
        if r[0] >= 10_000:
            print(f"N={r[0]}: wall ratio {r[3]:.2f} (target <= 1.2): {'MET' if r[3] <= 1.2 else 'MISSED'}; "
                  f"memory ratio {r[9]:.2f} (target <= 1.5): {'MET' if r[9] <= 1.5 else 'MISSED'}; "
                  f"{r[11]:.2f}x hand-batched (target <= 1.2): {'MET' if r[11] <= 1.2 else 'MISSED'}")
    name = "bench_dask" if args.batch_size is None else f"bench_dask_batch{args.batch_size}"
    cluster_desc = "LocalCluster(n_workers=2, threads_per_worker=1, processes)"
    print("JSON:", save_json(name, {"batch_size": args.batch_size, "cluster": cluster_desc, "measurements": records}))


HEADERS = ["N", "raw wall s", "ours wall s", "wall ratio", "raw us/task", "ours us/task", "extra us/task",
           "raw peak MiB", "ours peak MiB", "mem ratio", "batched wall s", "x batched", "bag wall s", "x bag",
           "batched peak MiB"]

if __name__ == "__main__":
    main()
