"""A run given up while its thread runs on (a flow timeout on the thread runner, or a task's own timeout) keeps
the final state and the history it had when it was given up: what the thread does later (return, raise, retry)
changes neither, runs no hook and computes nothing again."""
from __future__ import annotations

import threading
import time

from distributary import flow, task
from distributary.runners.thread import ThreadPoolTaskRunner

LATE = 1.5  # seconds the abandoned function runs on after it was given up


def _history(run) -> list[str]:
    return [s.name for s in run.state_history]


def test_a_run_abandoned_at_a_flow_timeout_keeps_its_cancelled_state_and_history():
    calls, hooks = [], []
    ended = {"returns": threading.Event(), "raises": threading.Event()}

    def on_completion(tk, run, state):
        hooks.append(("completion", run.name))

    def on_failure(tk, run, state):
        hooks.append(("failure", run.name))

    @task(on_completion=[on_completion], on_failure=[on_failure], retries=2, retry_delay_seconds=0)
    def late(how: str) -> str:
        calls.append(how)
        try:
            time.sleep(LATE)
            if how == "raises":
                raise RuntimeError("failed after the flow had timed out")
            return "finished after the flow had timed out"
        finally:
            ended[how].set()

    runs = {}

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=4), timeout_seconds=0.5)
    def timed():
        futs = {how: late.submit(how) for how in ended}
        runs.update({how: f.task_run for how, f in futs.items()})
        return [f.result() for f in futs.values()]

    assert timed(return_state=True).name == "TimedOut"
    at_timeout = {how: _history(run) for how, run in runs.items()}
    assert all(h == ["Pending", "Running", "Cancelled"] for h in at_timeout.values()), at_timeout
    for event in ended.values():
        assert event.wait(30)
    time.sleep(0.2)  # the threads' engine steps after the function returned or raised
    for how, run in runs.items():
        assert _history(run) == at_timeout[how], how
        assert run.state.is_cancelled() and "abandoned" in run.state.message
    assert sorted(calls) == ["raises", "returns"]  # the failing one was not retried
    assert hooks == []


def test_a_timed_out_task_whose_thread_runs_on_keeps_its_timed_out_state():
    ended = threading.Event()

    @task(timeout_seconds=0.3)
    def sleepy() -> str:
        try:
            time.sleep(LATE)  # in C: the thread runs on past the deadline
            return "too late"
        finally:
            ended.set()

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def f():
        fut = sleepy.submit()
        fut.wait()
        return fut.task_run, fut.state

    run, state = f()
    assert state.name == "TimedOut" and run.state is state
    history = _history(run)
    assert history == ["Pending", "Running", "TimedOut"]
    assert ended.wait(30)
    time.sleep(0.2)
    assert _history(run) == history and run.state is state
