"""The bulk form of state changes (`transitions.set_states_many`): one event for many runs to sinks that ask for
it, the same states one event each to every other sink, and the histories as `set_states` leaves them."""
from __future__ import annotations

import uuid

from distributary import states as S
from distributary.engine import transitions
from distributary.runs import FINISHED, RUN_FINISHED, STATE_CHANGED, STATES_CHANGED, TaskRun
from tests.recording_sink import RecordingSink


class BulkSink(RecordingSink):
    kinds = frozenset({STATES_CHANGED, STATE_CHANGED})


def _run(i: int) -> TaskRun:
    return TaskRun(uuid.uuid4(), f"t-{i}", "t", "t-key", None, {}, frozenset(), S.Pending())


def test_bulk_states_reach_bulk_sinks_once_and_others_per_state():
    plain, bulk = RecordingSink(), BulkSink()
    transitions.add_sink(plain)
    transitions.add_sink(bulk)
    try:
        runs = [_run(i) for i in range(3)]
        transitions.set_state(runs[0], S.Running())  # a single change before the bulk one keeps its place
        items = [(r, [S.Running(), S.Completed()]) for r in runs[1:]]
        items.append((runs[0], [S.Failed(message="boom")]))
        transitions.set_states_many(items)
        transitions.deliver()
    finally:
        transitions.remove_sink(plain)
        transitions.remove_sink(bulk)
    assert [s.name for s in runs[0].state_history] == ["Pending", "Running", "Failed"]
    assert [s.name for s in runs[1].state_history] == ["Pending", "Running", "Completed"]
    assert runs[2].state.is_completed() and runs[0].state.is_failed()
    # The plain sink sees every state of every run, in order, as single events.
    assert [(e[1].name, e[2].name) for e in plain.of(STATE_CHANGED)] == [
        ("t-0", "Running"), ("t-1", "Running"), ("t-1", "Completed"), ("t-2", "Running"), ("t-2", "Completed"),
        ("t-0", "Failed")]
    assert plain.of(STATES_CHANGED) == []
    # The bulk sink sees the single change, then one event carrying the three runs' states.
    assert [e[0] for e in bulk.events] == [STATE_CHANGED, STATES_CHANGED]
    assert [(r.name, [s.name for s in states]) for r, states in bulk.events[1][2]] == [
        ("t-1", ["Running", "Completed"]), ("t-2", ["Running", "Completed"]), ("t-0", ["Failed"])]


def test_an_abandoned_run_refuses_its_bulk_states_and_is_left_out_of_the_event():
    bulk = BulkSink()
    transitions.add_sink(bulk)
    try:
        given_up, other = _run(0), _run(1)
        transitions.abandon(given_up, S.Cancelled(message="abandoned at the flow's timeout"))
        transitions.set_states_many([(given_up, [S.Running(), S.Completed()]), (other, [S.Completed()])])
        transitions.deliver()
    finally:
        transitions.remove_sink(bulk)
    assert [s.name for s in given_up.state_history] == ["Pending", "Cancelled"]
    assert given_up.state.is_cancelled()
    assert other.state.is_completed()
    (bulk_event,) = bulk.of(STATES_CHANGED)
    assert [r.name for r, _ in bulk_event[2]] == ["t-1"]


class FinishedSink(RecordingSink):
    kinds = frozenset({FINISHED})


class EndsOnly(RecordingSink):
    kinds = frozenset({RUN_FINISHED})


def test_a_run_finishing_is_one_event_to_sinks_naming_it_and_two_to_the_others():
    plain, named, ends = RecordingSink(), FinishedSink(), EndsOnly()
    for sink in (plain, named, ends):
        transitions.add_sink(sink)
    try:
        run, other = _run(0), _run(1)
        transitions.set_state(run, S.Running())
        transitions.finish(run, S.Completed())
        transitions.finish(other, S.Failed(message="boom"))
        transitions.deliver()
    finally:
        for sink in (plain, named, ends):
            transitions.remove_sink(sink)
    assert [s.name for s in run.state_history] == ["Pending", "Running", "Completed"]
    assert run.state.is_completed() and other.state.is_failed()
    # A sink that does not name FINISHED sees the final state change, then the end, as before.
    assert [(e[0], e[1].name, e[2].name) for e in plain.events] == [
        (STATE_CHANGED, "t-0", "Running"), (STATE_CHANGED, "t-0", "Completed"), (RUN_FINISHED, "t-0", "Completed"),
        (STATE_CHANGED, "t-1", "Failed"), (RUN_FINISHED, "t-1", "Failed")]
    assert [(e[1].name, e[2].name) for e in ends.events] == [("t-0", "Completed"), ("t-1", "Failed")]
    assert all(e[0] == RUN_FINISHED for e in ends.events)
    # One that names it gets one event per run, carrying the final state.
    assert [(e[0], e[1].name, e[2].name) for e in named.events] == [
        (FINISHED, "t-0", "Completed"), (FINISHED, "t-1", "Failed")]


def test_an_abandoned_run_refuses_to_finish_again():
    plain = RecordingSink()
    transitions.add_sink(plain)
    try:
        run = _run(0)
        transitions.abandon(run, S.Cancelled(message="abandoned"))
        transitions.finish(run, S.Completed())  # its thread's late outcome
        transitions.deliver()
    finally:
        transitions.remove_sink(plain)
    assert [s.name for s in run.state_history] == ["Pending", "Cancelled"]
    assert [(e[0], e[2].name) for e in plain.events] == [(STATE_CHANGED, "Cancelled"), (RUN_FINISHED, "Cancelled")]
