"""The async driver runs store I/O (cache lookups, locks, persisting results) off the event loop."""
from __future__ import annotations

import asyncio
import time

from distributary import flow, task
from distributary.cache_policies import INPUTS


def test_cached_async_tasks_do_not_stall_the_event_loop(tmp_path):
    # Blocking I/O on the loop stalls every attempt; the shared 2-core machine's scheduling noise does not, so the
    # measurement is repeated (a fresh store each time) and one clean attempt is enough.
    worst = [_worst_gap(f"file://{tmp_path}/store-{attempt}") for attempt in range(3)]
    assert min(worst) < 0.1, f"the event loop stalled for {[round(w * 1000) for w in worst]} ms"


def _worst_gap(store: str) -> float:

    @task(cache_policy=INPUTS, persist_result=True, result_storage=store)
    async def square(x: int) -> int:
        return x * x

    @flow
    async def many() -> list[int]:
        results = await asyncio.gather(*(square(i) for i in range(200)))
        return list(results)

    @flow
    async def warm_up() -> None:  # the process's first flow run opens the run store (not what is measured here)
        pass

    async def main() -> tuple[list[int], list[int], float]:
        await warm_up()
        gaps: list[float] = []
        stop = asyncio.Event()

        async def heartbeat() -> None:
            last = time.perf_counter()
            while not stop.is_set():
                await asyncio.sleep(0.01)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        beat = asyncio.create_task(heartbeat())
        await asyncio.sleep(0.02)
        first = await many()   # computes and persists 200 results
        second = await many()  # 200 cache hits read from the store
        stop.set()
        await beat
        return first, second, max(gaps)

    first, second, worst = asyncio.run(main())
    assert first == second == [i * i for i in range(200)]
    return worst
