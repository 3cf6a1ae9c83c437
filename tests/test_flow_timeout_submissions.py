"""A flow whose function runs on after its timeout (it caught the timeout) can start no new task runs: each
submission, map or call is refused with FlowRunTimeoutError, no task function runs, and the flow ends TimedOut
(issue 15: the timeout's follow-up)."""
from __future__ import annotations

import threading
import time

from distributary import flow, task
from distributary.errors import FlowRunTimeoutError

ran: list[int] = []


@task
def record(i: int) -> int:
    ran.append(i)
    return i


def _body_catching_the_timeout(refused: list[str], finished: threading.Event):
    @flow(timeout_seconds=0.5)
    def stubborn():
        try:
            for _ in range(40):  # 2 s in short sleeps: the timeout arrives between bytecodes
                time.sleep(0.05)
        except TimeoutError:
            pass  # a user's broad except swallows the timeout and goes on
        for attempt in (lambda: record.submit(1), lambda: record.map([2, 3]), lambda: record(4)):
            try:
                attempt()
            except FlowRunTimeoutError as exc:
                refused.append(str(exc))
        finished.set()
        return "done"

    return stubborn


def test_a_flow_called_in_a_thread_refuses_submissions_after_its_timeout():
    ran.clear()
    refused: list[str] = []
    finished = threading.Event()
    stubborn = _body_catching_the_timeout(refused, finished)
    box: list = []
    t = threading.Thread(target=lambda: box.append(stubborn(return_state=True)))  # not the main thread: no SIGALRM
    t.start()
    t.join(30)
    assert finished.wait(30)
    state = box[0]
    assert state.name == "TimedOut" and state.is_failed(), state
    assert len(refused) == 3 and all("exceeded its timeout of 0.5 seconds" in m and "no new task runs" in m
                                     for m in refused), refused
    assert ran == []


def test_a_flow_that_swallows_its_timeout_and_returns_still_ends_timed_out():
    ran.clear()
    refused: list[str] = []
    finished = threading.Event()
    stubborn = _body_catching_the_timeout(refused, finished)
    state = stubborn(return_state=True)  # the main thread: SIGALRM raises inside the function, which goes on
    assert finished.wait(30)
    assert state.name == "TimedOut" and state.is_failed(), state
    assert "timeout" in state.message
    assert len(refused) == 3 and ran == []
