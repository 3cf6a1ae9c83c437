"""The worker's tight loop (`worker.run_batch` on a plain task), in this process: no cluster, the batch built
as the driver builds it. A run's record is made only when the task asks for it, and then it is the run the driver
made (its id, name, parameters, attempt); the result travels packed and arrives as the same final states."""
from __future__ import annotations

import pickle
import sys
import threading
import uuid

import cloudpickle

from distributary import states as S
from distributary import task
from distributary.runners.remote.telemetry import STATE, TelemetrySender, decode_telemetry
from distributary.runners.remote.worker import BatchHeader, pack_batch, run_batch
from distributary.runtime import task_run

cloudpickle.register_pickle_by_value(sys.modules[__name__])

@task(tags=["t"])
def probe(x: int):
    if x == 2:
        return (task_run.id, task_run.name, task_run.parameters, task_run.run_count)
    if x == 4:
        raise ValueError("four")
    if x == 5:
        return threading.Lock()  # cannot leave the worker
    return [x] if x == 3 else x * 10


def make_batch(n: int, channel: str | None = None) -> tuple[bytes, bytes, list[int]]:
    spec = probe.spec
    flow_run_id = uuid.uuid4()
    header = cloudpickle.dumps(BatchHeader("", "digest-probe", None, {"p": 1}, False, None, flow_run_id,
                                           frozenset({"t"}), channel))
    ids = [uuid.uuid4().int for _ in range(n)]
    specs = [(ids[i], None, i, 0, {"x": i}, False) for i in range(n)]
    return cloudpickle.dumps(spec), pack_batch("b-1", header, specs), ids


def test_a_run_that_asks_for_its_record_gets_the_run_the_driver_made(warnings_logged):
    task_payload, batch, ids = make_batch(6)
    result = run_batch(task_payload, batch, worker="w1")

    summary = result.take_summary()
    arrived = pickle.loads(pickle.dumps(result))  # as the driver fetches it
    states = arrived.states
    assert [s.type for s in states] == [S.StateType.COMPLETED] * 4 + [S.StateType.FAILED] * 2
    assert [states[i].data for i in (0, 1, 3)] == [0, 10, [3]]
    assert states[2].data == (str(uuid.UUID(int=ids[2])), "probe-2", {"x": 2}, 1)
    assert isinstance(states[4].data, ValueError) and "cannot be sent" in states[5].message
    # plain completions travel as their two times only; the failures as full entries with their histories
    assert summary.runs[:4] == [None] * 4
    assert all(summary.starts[i] <= summary.ends[i] == states[i].ts for i in range(4))
    for i in (4, 5):
        start, end, run_count, _, history, has_value = summary.runs[i]
        assert [s.name for s in history] == ["Running", "Failed"] and run_count == 1 and start <= end
        assert has_value is False
    errors = [r.getMessage() for r in warnings_logged]
    assert any(m.startswith("Task run 'probe-4' finished in state Failed") for m in errors), errors


def test_the_running_run_of_a_channel_goes_out_as_a_live_state_until_it_ends():
    sent: list[bytes] = []
    sender = TelemetrySender(interval=3600)
    sender.set_transport(lambda channel, payload: sent.append(payload))
    sender.running("ch", 7, 123.0)
    sender.flush("ch")
    sender.idle("ch")
    sender.flush("ch")
    assert len(sent) == 1
    channel, records = decode_telemetry(sent[0])
    assert channel == "ch" and len(records) == 1
    kind, (run_id, state) = records[0]
    assert kind == STATE and run_id == 7 and state.is_running() and state.ts == 123.0

