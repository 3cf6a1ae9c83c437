"""The transition seam seen from the remote runners: a recording sink sees, for a `.map()` of 1,000 task runs on
processes, Dask and Ray, the 1,000 creations (in one event) and every state of every run in the order the run went
through them, including a retry after a failure and a run whose worker is killed each time it runs it (Crashed
after its retry)."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from distributary import flow, task, unmapped
from distributary.engine import transitions
from distributary.futures import wait

N = 1000
FAILS_ONCE, KILLS = 7, 500


class Recorder:
    kinds = frozenset({"state_changed", "task_runs_created"})

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def handle(self, events) -> None:
        self.events.extend(events)


@task(retries=1)
def flaky(x: int, d: str) -> int:
    if x == KILLS:
        os.kill(os.getpid(), signal.SIGKILL)
    flag = Path(d, f"failed-{x}")
    if x == FAILS_ONCE and not flag.exists():
        flag.touch()
        raise ValueError("first attempt fails")
    return x


@pytest.mark.parametrize("kind", ["processes", "dask", "ray"])
def test_sink_sees_every_state_of_every_run_in_order(kind, request, tmp_path):
    if kind == "processes":
        from distributary.runners.process import ProcessPoolTaskRunner

        runner = ProcessPoolTaskRunner(max_workers=2)
    else:
        runner = request.getfixturevalue(f"{kind}_runner")

    @flow(task_runner=runner)
    def fan() -> list:
        futs = flaky.map(range(N), unmapped(str(tmp_path)))
        wait(futs)
        return [f.task_run for f in futs]

    sink = Recorder()
    transitions.add_sink(sink)
    try:
        runs = fan()
        transitions.flush(10)
    finally:
        transitions.remove_sink(sink)
    if kind == "dask":
        request.getfixturevalue("dask_processes").wait_for_workers()
    ids = {id(r): r for r in runs}
    # one creation event for the .map(), holding the 1,000 task runs (the threads' test: tests/engine/)
    created = [batch for kind, _, batch in sink.events if kind == "task_runs_created"
               and any(id(r) in ids for r in batch)]
    assert len(created) == 1 and len(created[0]) == N
    assert {id(r) for r in created[0]} == set(ids)
    seen: dict[int, list] = {}
    for kind, run, state in sink.events:
        if kind == "state_changed" and id(run) in ids:
            seen.setdefault(id(run), []).append(state)
    assert len(seen) == N
    for run in runs:
        assert [s.name for s in seen[id(run)]] == [s.name for s in run.state_history[1:]]
        assert all(a is b for a, b in zip(seen[id(run)], run.state_history[1:]))
    names = {r.name: [s.name for s in r.state_history[1:]] for r in runs}
    assert names[f"flaky-{FAILS_ONCE}"] == ["Running", "AwaitingRetry", "Retrying", "Completed"]
    assert names[f"flaky-{KILLS}"] == ["Crashed", "AwaitingRetry", "Crashed"]
    assert sum(1 for r in runs if r.state.is_completed()) == N - 1
    for r in runs:
        if r.name not in (f"flaky-{FAILS_ONCE}", f"flaky-{KILLS}"):
            assert names[r.name] == ["Running", "Completed"]
