"""Engine overhead per task on ThreadPoolTaskRunner against a raw concurrent.futures.ThreadPoolExecutor doing
the same work in the same run: N trivial tasks, `.map` then `.result()` vs `submit` then `result()`.

    python benchmarks/bench_threads.py [--sizes 1000,10000,100000] [--repeat 3]

Targets (issue 2): at N = 10^5 at most 60 us of engine overhead per task above the raw pool, and driver peak
memory under 2 KB per task beyond the raw pool's.
"""
from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("DISTRIBUTARY_LOGGING_LEVEL", "WARNING")

from common import measure, save_json, table  # noqa: E402

from distributary import flow, task  # noqa: E402
from distributary.runners.thread import ThreadPoolTaskRunner  # noqa: E402

WORKERS = min(32, (os.cpu_count() or 1) + 4)  # the default of both pools


def inc(x: int) -> int:
    return x + 1


inc_task = task(inc)


@flow(task_runner=ThreadPoolTaskRunner(max_workers=WORKERS))
def fan_out(n: int) -> int:
    return len(inc_task.map(range(n)).result())


def raw(n: int) -> int:
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures = [pool.submit(inc, i) for i in range(n)]
        return len([f.result() for f in futures])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows, records = [], []
    for n in [int(float(s)) for s in args.sizes.split(",")]:
        base = measure("raw ThreadPoolExecutor", n, lambda n=n: raw(n), args.repeat)
        ours = measure("distributary threads", n, lambda n=n: fan_out(n), args.repeat)
        overhead_us = (ours.wall - base.wall) / n * 1e6
        mem_extra = (ours.peak_bytes - base.peak_bytes) / n
        rows.append([n, base.wall, ours.wall, ours.wall / base.wall, overhead_us, base.peak_bytes / n,
                     ours.peak_bytes / n, mem_extra])
        records += [base.summary(), ours.summary()]
    headers = ["N", "raw wall s", "ours wall s", "ratio", "overhead us/task", "raw B/task", "ours B/task",
               "extra B/task"]
    print(table(rows, headers))
    last = rows[-1]
    print(f"\nAt N={last[0]}: overhead {last[4]:.1f} us/task (target <= 60): "
          f"{'MET' if last[4] <= 60 else 'MISSED'}; extra driver memory {last[7]:.0f} B/task (target < 2048): "
          f"{'MET' if last[7] < 2048 else 'MISSED'}")
    print("JSON:", save_json("bench_threads", {"workers": WORKERS, "measurements": records}))


if __name__ == "__main__":
    main()
