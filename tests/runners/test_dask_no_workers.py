"""A Dask scheduler without workers runs nothing: the driver warns (naming the scheduler) after a bounded time,
a task's timeout_seconds ends its runs TimedOut, and a flow's timeout_seconds ends the flow (issue 15 item 6).
A real `dask scheduler` process started with no workers."""
from __future__ import annotations

import sys
import time

import cloudpickle
import pytest

from distributary import flow, task
from distributary.runners.remote import driver

cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(autouse=True)
def warn_sooner(monkeypatch):
    monkeypatch.setattr(driver, "NO_WORKERS_WARN_AFTER", 1.0)  # the default (10 s) would only make the test slow


@task
def double(x: int) -> int:
    return 2 * x


def _no_worker_warnings(records, address: str) -> list[str]:
    return [r.getMessage() for r in records if "has no workers" in r.getMessage() and address in r.getMessage()]


def test_a_task_timeout_ends_runs_that_cannot_start_timed_out(dask_scheduler_only, warnings_logged):
    from distributary.runners.dask import DaskTaskRunner

    address = dask_scheduler_only.address

    @flow(task_runner=DaskTaskRunner(address=address))
    def f():
        futures = double.with_options(timeout_seconds=3).map([1, 2, 3])
        return [fut.state for fut in futures if fut.wait() or True]

    t0 = time.monotonic()
    states = f()
    elapsed = time.monotonic() - t0
    assert [s.name for s in states] == ["TimedOut"] * 3
    assert all("has no workers" in s.message and address in s.message for s in states)
    assert _no_worker_warnings(warnings_logged, address)
    assert elapsed < 3 + 10


def test_a_flow_timeout_ends_the_flow_and_the_wait_is_reported(dask_scheduler_only, warnings_logged):
    from distributary.runners.dask import DaskTaskRunner

    address = dask_scheduler_only.address

    @flow(task_runner=DaskTaskRunner(address=address), timeout_seconds=4)
    def f():
        return double.submit(1).result()

    t0 = time.monotonic()
    state = f(return_state=True)
    elapsed = time.monotonic() - t0
    assert state.name == "TimedOut"
    assert _no_worker_warnings(warnings_logged, address)
    assert elapsed < 4 + 10
