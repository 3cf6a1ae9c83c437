"""distributary on Ray against raw Ray in the same run: N trivial tasks on a local 2-CPU Ray instance.

    python benchmarks/bench_ray.py [--sizes 1000,10000,100000] [--repeat 3] [--repeat-large 1] [--no-tracemalloc]
        [--per-item-max 10000]

ours: a flow with RayTaskRunner() (it joins the instance this process started) doing
`inc.map(range(N)).result()`: each call includes the flow run, the runner's start and shutdown, packing, one
task-run record with its own states per element, and fetching the values. raw: `ray.get([inc.remote(i) for i
in range(N)])` with a remote function defined once; hand-batched raw: `ray.get` of `process_chunk.remote(chunk)`
over CHUNKS chunks, flattened (what an experienced Ray user writes for many small items). All run in this
process against the same Ray instance.

Wall time: median of --repeat timed runs (--repeat-large for N >= 10^5: raw Ray takes minutes there).
Driver peak memory, the same two ways for both: (1) growth of the resident set during each timed run (the
kernel's high-water mark, reset before the run; it includes the C++ memory of Ray's core worker, which holds
raw Ray's per-task state), reported as the largest over the timed runs; (2) tracemalloc's peak in one more,
untimed run (Python allocations only, comparable with bench_dask/bench_threads).
Targets: ours <= 1.2x per-item raw wall at N = 10^4 and 10^5; <= 1.5x raw driver memory; ours <= 5x the
hand-batched raw wall at N = 10^5.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("DISTRIBUTARY_LOGGING_LEVEL", "WARNING")
for _k, _v in (("RAY_AUTH_MODE", "disabled"), ("RAY_USAGE_STATS_ENABLED", "0"),
               ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")):  # EMULATORS.md P9
    os.environ.setdefault(_k, _v)

from common import RssMeasurement, measure_rss, save_json, table  # noqa: E402

from distributary import flow, task  # noqa: E402

HEADERS = ["N", "raw wall s", "ours wall s", "wall ratio", "raw us/task", "ours us/task", "overhead us/task",
           "raw RSS MiB", "ours RSS MiB", "RSS ratio", "raw tracemalloc MiB", "ours tracemalloc MiB",
           "tracemalloc ratio", "batched wall s", "x batched", "batched RSS MiB"]

CHUNKS = 32


def inc(x: int) -> int:
    return x + 1


inc_task = task(inc)


def make_flow():
    from distributary.runners.ray import RayTaskRunner

    @flow(task_runner=RayTaskRunner())
    def fan_out(n: int) -> int:
        return len(inc_task.map(range(n)).result())

    return fan_out


def make_raw():
    import ray

    inc_remote = ray.remote(inc)

    def raw(n: int) -> int:
        refs = [inc_remote.remote(i) for i in range(n)]
        out = ray.get(refs)
        del refs
        return len(out)

    return raw


def process_chunk(chunk: range) -> list[int]:
    return [inc(x) for x in chunk]


def make_raw_batched():
    import ray

    chunk_remote = ray.remote(process_chunk)

    def raw_batched(n: int) -> int:
        size = -(-n // CHUNKS)
        refs = [chunk_remote.remote(range(i, min(n, i + size))) for i in range(0, n, size)]
        out = [y for part in ray.get(refs) for y in part]
        del refs
        return len(out)

    return raw_batched


def _ratio(a: float | None, b: float | None) -> float:
    return a / b if a and b else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--repeat-large", type=int, default=1, help="repeats for N >= 10^5")
    parser.add_argument("--per-item-max", type=float, default=None,
                        help="run the per-item raw baseline only up to this N (it takes minutes at 10^5)")
    parser.add_argument("--no-tracemalloc", action="store_true", help="skip the extra tracemalloc runs")
    args = parser.parse_args()
    import ray

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=512 * 2**20, log_to_driver=False)
    fan_out, raw, raw_batched = make_flow(), make_raw(), make_raw_batched()
    rows, records = [], []
    try:
        raw(200)      # warm every path: worker processes, imports, function exports
        raw_batched(200)
        fan_out(200)
        for n in [int(float(s)) for s in args.sizes.split(",")]:
            repeat = args.repeat_large if n >= 100_000 else args.repeat
            tm = not args.no_tracemalloc
            base = (measure_rss("raw ray.remote + ray.get", n, lambda n=n: raw(n), repeat, tm)
                    if args.per_item_max is None or n <= args.per_item_max
                    else RssMeasurement("raw ray.remote + ray.get (not run)", n, [float("nan")]))
            batched = measure_rss(f"raw ray.remote over {CHUNKS} chunks", n, lambda n=n: raw_batched(n), repeat, tm)
            ours = measure_rss("distributary RayTaskRunner", n, lambda n=n: fan_out(n), repeat, tm)
            mib = 2**20
            rows.append([n, base.wall, ours.wall, ours.wall / base.wall, base.per_task_us, ours.per_task_us,
                         (ours.wall - base.wall) / n * 1e6, base.peak_rss_bytes / mib, ours.peak_rss_bytes / mib,
                         _ratio(ours.peak_rss_bytes, base.peak_rss_bytes), (base.peak_bytes or 0) / mib,
                         (ours.peak_bytes or 0) / mib, _ratio(ours.peak_bytes, base.peak_bytes), batched.wall,
                         ours.wall / batched.wall, batched.peak_rss_bytes / mib])
            records += [base.summary(), batched.summary(), ours.summary()]
            print(table(rows[-1:], HEADERS), flush=True)
    finally:
        ray.shutdown()
    print()
    print(table(rows, HEADERS))
    for row in rows:
        if row[0] >= 10_000:
            print(f"N={row[0]}: wall {row[3]:.2f}x raw (target <= 1.2): {'MET' if row[3] <= 1.2 else 'MISSED'}; "
                  f"driver RSS {row[9]:.2f}x raw (target <= 1.5): {'MET' if row[9] <= 1.5 else 'MISSED'}; "
                  f"tracemalloc {row[12]:.2f}x raw; {row[14]:.1f}x hand-batched"
                  + (f" (target <= 5): {'MET' if row[14] <= 5 else 'MISSED'}" if row[0] >= 100_000 else ""))
    print("JSON:", save_json("bench_ray", {"ray_cpus": 2, "measurements": records}))


if __name__ == "__main__":
    main()
