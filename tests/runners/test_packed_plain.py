"""A packed batch of a plain task (no result options, hooks, retries, timeout) runs its task runs in a tight loop
on the worker and ships them in compact form. Each run still ends as the engine would end it, and a failure in
one run of the batch touches only that run: same final states and state histories on Dask and Ray as on the
thread runner, the exception kept, values fetched, logs from the run's logger shipped."""
from __future__ import annotations

import threading

import pytest

from distributary import flow, get_run_logger, task
from distributary import states as S
from distributary.futures import wait
from distributary.runners.thread import ThreadPoolTaskRunner

N = 40


@task
def mixed(x: int):
    if x == 3:
        raise ValueError(f"boom {x}")
    if x == 5:
        return S.Failed(message="returned a failed state")
    if x == 7:
        return (i for i in range(3))
    if x == 9:
        return threading.Lock()  # cannot leave a worker
    if x == 11:
        get_run_logger().warning("hello from run %d", x)
    return x * 2


def outcome(runner) -> list[tuple]:
    @flow(task_runner=runner)
    def fan() -> list:
        futs = mixed.map(range(N))
        wait(futs)
        return [(f.state.name, [s.name for s in f.task_run.state_history], f.task_run.run_count,
                 f.task_run.start_ts is not None and f.task_run.end_ts >= f.task_run.start_ts,
                 f.state.result(raise_on_failure=False) if x not in (3, 9) else type(f.state.data).__name__)
                for x, f in enumerate(futs)]

    return fan()


@pytest.mark.parametrize("kind", ["dask", "ray"])
def test_plain_batch_ends_each_run_as_the_thread_runner_does(kind, request, warnings_logged):
    remote = outcome(request.getfixturevalue(f"{kind}_runner"))
    local = outcome(ThreadPoolTaskRunner(max_workers=4))
    assert [r[:4] for r in remote[:9]] == [r[:4] for r in local[:9]]
    assert remote[3][0] == "Failed" and remote[3][4] == "ValueError"
    assert remote[5][0] == "Failed" and remote[7][4] == [0, 1, 2]
    assert remote[9][0] == "Failed" and remote[9][4] == "SerializationError"
    assert [r[4] for r in remote[10:]] == [x * 2 for x in range(10, N)]
    assert all(r[1] == ["Pending", "Running", "Completed"] and r[2] == 1 and r[3] for r in remote[10:])
    assert any("hello from run 11" in rec.getMessage() for rec in warnings_logged)
