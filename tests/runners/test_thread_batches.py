"""A `.map()` on the thread runner is queued as one batch: its runs keep everything a run of a single submit has
(own id, name, state history, concurrency up to max_workers, work stealing)."""
from __future__ import annotations

import threading
import uuid

from distributary import flow, task
from distributary.futures import as_completed, wait
from distributary.task_runners import ThreadPoolTaskRunner


@task
def inc(x: int) -> int:
    return x + 1


def test_map_runs_have_unique_uuid4_ids_default_names_and_full_histories():
    held: list = []

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=4))
    def fan_out() -> None:
        held.extend(inc.map(range(2000)))

    fan_out()
    futures = held
    runs = [f.task_run for f in futures]
    ids = [r.id for r in runs]
    assert all(isinstance(i, uuid.UUID) and i.version == 4 for i in ids)
    assert len(set(ids)) == 2000
    assert ids[0] is runs[0].id  # made once, then kept
    assert sorted(r.name for r in runs) == sorted(f"inc-{i}" for i in range(2000))
    assert [f.result() for f in futures] == list(range(1, 2001))
    for r in runs:
        assert [s.name for s in r.state_history] == ["Pending", "Running", "Completed"]
        assert r.state_history[0].ts <= r.state_history[1].ts <= r.state_history[2].ts


def test_two_maps_get_different_ids():
    @flow
    def twice() -> list[uuid.UUID]:
        return [f.task_run.id for f in inc.map(range(50))] + [f.task_run.id for f in inc.map(range(50))]

    assert len(set(twice())) == 100


def test_runs_of_one_map_run_concurrently_up_to_max_workers():
    # Each run waits at a barrier for three others: if a worker ran several runs of the batch one after the
    # other while fewer than four workers drew runs, the barrier would break after its timeout.
    barrier = threading.Barrier(4, timeout=20)

    @task
    def meet(i: int) -> int:
        barrier.wait()
        return i

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=4))
    def gather() -> list[int]:
        return meet.map(range(8)).result()

    assert gather() == list(range(8))


def test_a_run_of_a_map_waiting_for_a_later_run_of_the_same_map_does_not_deadlock():
    holder: dict[str, object] = {}
    started = threading.Event()

    @task
    def first_waits_for_last(i: int) -> int:
        if i == 0:
            started.wait(20)
            return holder["futures"][-1].result() + 100  # type: ignore[index]
        return i

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    def chain() -> list[int]:
        futures = first_waits_for_last.map(range(5))
        holder["futures"] = futures
        started.set()
        return futures.result()

    assert chain() == [104, 1, 2, 3, 4]


def test_wait_and_as_completed_see_every_run_of_a_map():
    @flow
    def both() -> tuple[int, int]:
        futures = inc.map(range(300))
        done, not_done = wait(futures)
        return len(done) + len(not_done) * 1000, sum(f.result() for f in as_completed(futures))

    assert both() == (300, sum(range(1, 301)))
