"""A flow's `timeout_seconds` is honoured at the deadline on every runner (issue 15 item 7): the flow ends
`TimedOut` and returns then, not when its tasks end; the runs still going end Cancelled (stopped where the runner
can, abandoned with a WARNING where it cannot: a thread)."""
from __future__ import annotations

import sys
import time

import cloudpickle

from distributary import flow, task

cloudpickle.register_pickle_by_value(sys.modules[__name__])

FLOW_TIMEOUT = 3
TASK_SECONDS = 15  # longer than FLOW_TIMEOUT + MARGIN, so a flow that waited for its tasks would fail
MARGIN = 10  # generous: the deadline, not the task's 15 s, is what the flow must honour


@task
def slow(seconds: float) -> str:
    time.sleep(seconds)
    return "finished"


def test_flow_timeout_returns_at_the_deadline_and_cancels_its_runs(runner, warnings_logged, request):
    futures = []

    @flow(task_runner=runner, timeout_seconds=FLOW_TIMEOUT)
    def timed():
        futures.append(slow.submit(TASK_SECONDS))
        futures.extend(slow.map([TASK_SECONDS] * 3))  # queued behind the first on small runners
        return [f.result() for f in futures]

    t0 = time.monotonic()
    state = timed(return_state=True)
    elapsed = time.monotonic() - t0
    if runner.name == "dask":  # the run already in a Dask worker thread finishes there: let the next tests have it
        request.getfixturevalue("dask_processes").wait_idle()

    assert state.name == "TimedOut" and state.is_failed(), state
    assert "timeout" in state.message and "3" in state.message
    assert elapsed < FLOW_TIMEOUT + MARGIN, f"the flow returned after {elapsed:.1f} s"
    assert len(futures) == 4
    for fut in futures:
        assert fut.done()
        assert fut.state.is_cancelled(), fut.state
        assert "timed out" in fut.state.message
    logged = "\n".join(r.getMessage() for r in warnings_logged)
    if runner.name == "threads":
        assert "slow-0" in logged and "cannot be stopped" in logged
    else:
        assert "4 task run(s)" in logged and "were cancelled" in logged
