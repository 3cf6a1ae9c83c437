"""The main job: a flow that fans a task out over 10,000 items with `.map()` on the default runner (threads)
and the default result store (DISTRIBUTARY_HOME/storage), then reduces and prints a summary.

    python examples/demo_map.py [--n 10000] [--runner threads|processes|dask|ray]
"""
from __future__ import annotations

import argparse
import time
from collections import Counter

from distributary import flow, task
from distributary.futures import wait


@task(retries=2, retry_delay_seconds=0)
def score(item: int) -> int:
    """A small unit of work: a checksum of the item."""
    return sum(int(d) for d in str(item * 7919)) % 10


@task(persist_result=True)
def summarize(scores: list[int]) -> dict:
    """Persisted to the local result store, so the summary can be loaded by any process."""
    return {"n": len(scores), "total": sum(scores), "histogram": dict(sorted(Counter(scores).items()))}


@flow(log_prints=True)
def demo_map(n: int = 10_000) -> dict:
    futures = score.map(range(n))
    done, not_done = wait(futures)
    states = Counter(f.state.name for f in futures)
    summary = summarize(futures.result())
    print(f"{n} task runs: {dict(states)}; {len(not_done)} not done")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--runner", default="threads")
    args = parser.parse_args()
    t0 = time.perf_counter()
    summary = demo_map.with_options(task_runner=args.runner)(args.n)
    elapsed = time.perf_counter() - t0
    print("\nSummary")
    print(f"  task runs     {summary['n']}")
    print(f"  total score   {summary['total']}")
    print(f"  histogram     {summary['histogram']}")
    print(f"  wall time     {elapsed:.2f} s ({elapsed / args.n * 1e6:.0f} us per task run, runner {args.runner!r})")


if __name__ == "__main__":
    main()
