"""The transition seam seen from a sink: creations in bulk, every state of every run in order, logs, the recorder."""
from __future__ import annotations

import logging
import threading

from recording_sink import recording

from distributary import flow, get_run_logger, task
from distributary.runs import InMemoryRecorder, RunRecorder, get_recorder, set_recorder

_attempts: dict[int, int] = {}
_lock = threading.Lock()


@task(retries=2, retry_delay_seconds=0)
def flaky(i: int) -> int:
    with _lock:
        _attempts[i] = _attempts.get(i, 0) + 1
        n = _attempts[i]
    if i % 100 == 0 and n == 1:  # every 100th run fails once, then succeeds
        raise ValueError(f"first attempt of {i}")
    return i


def test_thread_map_of_1000_is_seen_whole_by_the_sink():
    _attempts.clear()

    @flow(task_runner="threads")
    def fan_out() -> list[int]:
        return flaky.map(range(1000)).result()

    with recording() as sink:
        assert fan_out() == list(range(1000))
    created = sink.of("task_runs_created")
    assert len(created) == 1, "one .map() is one creation event"
    runs = created[0][2]
    assert len(runs) == 1000
    assert len({r.id for r in runs}) == 1000
    for r in runs:
        i = r.parameters["i"]
        # a failure that is retried is not applied as a state: Running -> AwaitingRetry -> Retrying
        expected = (["Running", "AwaitingRetry", "Retrying", "Completed"] if i % 100 == 0
                    else ["Running", "Completed"])
        seen = sink.states_of(r)
        assert seen == expected, (i, seen)
        assert [s.name for s in r.state_history] == ["Pending", *expected]
    finished = [e for e in sink.of("run_finished") if e[1] in set(runs)]
    assert len(finished) == 1000
    (flow_created,) = sink.of("flow_run_created")
    flow_run = flow_created[1]
    assert sink.states_of(flow_run) == ["Running", "Completed"]
    assert [e[1] for e in sink.of("run_finished")][-1] is flow_run


def test_every_submit_is_one_creation_event():
    @task
    def one(x: int) -> int:
        return x

    @flow
    def three() -> int:
        return sum(one.submit(i).result() for i in range(3))

    with recording() as sink:
        assert three() == 3
    assert [len(e[2]) for e in sink.of("task_runs_created")] == [1, 1, 1]


def test_log_records_become_events_while_a_sink_wants_them():
    @flow
    def talks() -> None:
        get_run_logger().warning("hello from the flow")

    with recording() as sink:
        talks()
    logs = [e[2] for e in sink.of("log")]
    assert any(d["msg"] == "hello from the flow" and d["levelno"] == logging.WARNING for d in logs)
    assert all(isinstance(d["msg"], str) for d in logs)


def test_the_recorder_hears_of_every_finished_run():
    class Counting(InMemoryRecorder):
        def __init__(self) -> None:
            super().__init__()
            self.finished_tasks: list[str] = []
            self.finished_flows: list[str] = []

        def task_run_finished(self, run):  # type: ignore[override]
            self.finished_tasks.append(run.state.name)

        def flow_run_finished(self, run):  # type: ignore[override]
            self.finished_flows.append(run.state.name)

    @task
    def add(x: int) -> int:
        return x + 1

    @flow
    def small() -> list[int]:
        return add.map([1, 2, 3]).result()

    old: RunRecorder = get_recorder()
    rec = Counting()
    set_recorder(rec)
    try:
        assert small() == [2, 3, 4]
    finally:
        set_recorder(old)
    assert rec.finished_tasks == ["Completed"] * 3
    assert rec.finished_flows == ["Completed"]
    assert rec.flow_runs[-1].state.is_completed()


@task
def _inc(x: int) -> int:
    return x + 1


def test_a_busy_map_is_delivered_by_its_task_threads_whole_and_in_order():
    """Past 20,000 queued events (a 30,000-run map makes 90,000) the task threads deliver, a slice at a time, and
    past 40,000 wait their turn: every event still reaches the sink once, each run's in order, the creation first."""
    from recording_sink import RecordingSink

    from distributary.engine import transitions

    class ByThread(RecordingSink):
        def __init__(self) -> None:
            super().__init__()
            self.threads: set[str] = set()

        def handle(self, events):
            self.threads.add(threading.current_thread().name)
            super().handle(events)

    @flow(task_runner="threads")
    def busy(n: int) -> int:
        return sum(_inc.map(range(n)).result())

    sink = ByThread()
    transitions.add_sink(sink)
    try:
        assert busy(30_000) == sum(range(1, 30_001))
        transitions.deliver()
    finally:
        transitions.remove_sink(sink)
    (created,) = [e for e in sink.events if e[0] == "task_runs_created" and len(e[2]) == 30_000]
    runs = set(created[2])
    at = sink.events.index(created)
    seen: dict[object, list[str]] = {}
    for i, (kind, run, payload) in enumerate(sink.events):
        if run in runs:
            assert i > at, "a run's state came before its creation"
            seen.setdefault(run, []).append(payload.name if kind == "state_changed" else kind)
    assert len(seen) == 30_000
    assert {tuple(v) for v in seen.values()} == {("Running", "Completed", "run_finished")}
    assert any(name.startswith("distributary-thread-") for name in sink.threads), sink.threads
