"""Tag-based task-run concurrency limits on every task runner: tasks tagged with a limited tag never run more
at once than the limit (threads, processes, Dask, Ray: the slots are taken where the task runs, from the shared
run store), and a task that fails gives its slot back."""
from __future__ import annotations

import time
import uuid

import pytest
from procs import max_overlap

from distributary import flow, task
from distributary.runners.process import ProcessPoolTaskRunner
from distributary.runners.thread import ThreadPoolTaskRunner
from distributary.runstore import get_storage, slots


@pytest.fixture
def tag():
    """A fresh tag with a limit of 2 in the suite's run store (the one Dask and Ray workers see too)."""
    name = f"db-{uuid.uuid4().hex[:8]}"
    get_storage().create_tag_concurrency_limit(name, 2)
    slots.forget_tag_cache()
    yield name
    get_storage().delete_tag_concurrency_limit(name)


@pytest.mark.parametrize("kind", ["threads", "processes", pytest.param("dask", marks=pytest.mark.slow),
                                  pytest.param("ray", marks=pytest.mark.slow)])
def test_tagged_tasks_never_exceed_their_tags_limit(kind, tag, request):
    runner = {"threads": lambda: ThreadPoolTaskRunner(max_workers=6),
              "processes": lambda: ProcessPoolTaskRunner(max_workers=4)}.get(kind)
    runner = runner() if runner else request.getfixturevalue(f"{kind}_runner")
    limit = 2
    if kind in ("dask", "ray"):
        # The clusters run at most two tasks at once (two single-threaded workers), and under load their
        # batches may run one after another, so there the limit is 1: two runs overlapping would break it.
        limit = 1
        get_storage().create_tag_concurrency_limit(tag, limit)
        time.sleep(slots.TAG_CACHE_SECONDS + 0.5)  # long-lived workers re-read the limited tags this often

    @task(tags=[tag])
    def hold(i: int) -> tuple[float, float]:
        start = time.time()
        time.sleep(0.3)
        return start, time.time()

    @flow(task_runner=runner)
    def fan() -> list:
        return [f.result() for f in [hold.submit(i) for i in range(6)]]

    spans = fan()
    assert len(spans) == 6
    assert max_overlap(spans) == limit  # the limit was used and never exceeded
    assert get_storage().read_tag_concurrency_limit(tag).active_slots == []


def test_a_failing_tagged_task_gives_its_slot_back_and_untagged_tasks_do_not_wait(tag):
    @task(tags=[tag])
    def boom() -> None:
        raise ValueError("no")

    @task
    def free(i: int) -> tuple[float, float]:
        start = time.time()
        time.sleep(0.2)
        return start, time.time()

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=4))
    def mixed() -> list:
        states = [boom.submit(return_state=True) for _ in range(3)]
        return [f.result() for f in [free.submit(i) for i in range(4)]], states

    spans, _ = mixed()
    assert max_overlap(spans) == 4
    got = get_storage().read_tag_concurrency_limit(tag)
    assert got.active_slots == [] and get_storage().read_concurrency_limit(got.id).active_slots == 0
