"""States and the engine's pure decisions (retry delays, final states)."""
from __future__ import annotations

import datetime as dt
import pickle
import random

import pytest

from distributary import states as S
from distributary.engine import core
from distributary.errors import ConfigurationError, FailedRun, UnfinishedRun, WorkerCrashedError
from distributary.tasks import exponential_backoff


def test_state_predicates_and_names():
    cases = {
        S.Completed(): ("is_completed", True), S.Failed(): ("is_failed", True), S.Crashed(): ("is_crashed", True),
        S.Cancelled(): ("is_cancelled", True), S.Pending(): ("is_pending", False),
        S.Running(): ("is_running", False), S.Scheduled(): ("is_scheduled", False),
        S.Paused(): ("is_paused", False), S.Cached(): ("is_completed", True), S.Retrying(): ("is_running", False),
        S.AwaitingRetry(): ("is_scheduled", False), S.TimedOut(): ("is_failed", True),
    }
    for state, (predicate, final) in cases.items():
        assert getattr(state, predicate)(), state
        assert state.is_final() is final, state
    assert (S.Cached().name, S.Retrying().name, S.AwaitingRetry().name) == ("Cached", "Retrying", "AwaitingRetry")
    assert isinstance(S.Completed().timestamp, dt.datetime) and S.Completed().timestamp.tzinfo is not None


def test_state_results():
    assert S.Completed(data=5).result() == 5
    err = ValueError("x")
    with pytest.raises(ValueError):
        S.Failed(data=err).result()
    assert S.Failed(data=err).result(raise_on_failure=False) is err
    with pytest.raises(FailedRun, match="went wrong"):
        S.Failed(message="went wrong").result()
    with pytest.raises(UnfinishedRun):
        S.Running().result()
    copy = pickle.loads(pickle.dumps(S.Completed(message="m", data=[1])))
    assert copy.result() == [1] and copy.message == "m" and copy.name == "Completed"


def test_exponential_backoff_and_delay_lists():
    assert exponential_backoff(backoff_factor=2)(4) == [2, 4, 8, 16]
    assert core.normalize_retry_delays(exponential_backoff(3), 3) == (3.0, 6.0, 12.0)
    delays = core.normalize_retry_delays([1, 2], 5)
    assert [core.retry_delay(delays, k, None) for k in range(1, 6)] == [1, 2, 2, 2, 2]
    assert core.normalize_retry_delays(None, 2) == (0.0,)
    with pytest.raises(ConfigurationError):
        core.normalize_retry_delays([1, -1], 2)


def test_jitter_stays_within_bounds():
    rng = random.Random(7)
    draws = [core.retry_delay((10.0,), 1, 0.5, rng) for _ in range(500)]
    assert min(draws) >= 10 and max(draws) <= 15 and max(draws) - min(draws) > 2


def test_should_retry():
    failed = S.Failed()
    assert core.should_retry(2, 1, failed, None)
    assert not core.should_retry(2, 3, failed, None)
    assert not core.should_retry(2, 1, failed, lambda: False)
    assert not core.should_retry(2, 1, S.Completed(), None)
    # a worker that died under a run used an attempt the run's code did not fail: retried like a failure
    died = S.Crashed(data=WorkerCrashedError("worker died"))
    assert core.should_retry(1, 1, died, None) and not core.should_retry(1, 2, died, None)
    assert not core.should_retry(2, 1, S.Crashed(data=KeyboardInterrupt()), None)


def test_next_retry_is_the_rule_for_every_run():
    delays = (1.0, 5.0)
    assert core.next_retry(2, delays, None, 1, S.Failed()) == 1.0
    assert core.next_retry(2, delays, None, 2, S.Failed()) == 5.0
    assert core.next_retry(2, delays, None, 3, S.Failed()) is None
    assert core.next_retry(2, delays, None, 1, S.Failed(), lambda: False) is None
    assert core.next_retry(2, delays, None, 1, S.TimedOut()) == 1.0  # TimedOut is a Failed state
    assert 5.0 <= core.next_retry(2, delays, 0.5, 2, S.Failed()) <= 7.5  # type: ignore[operator]


def test_flow_state_from_return():
    """Prefect 3's rule: only a list/tuple/set made entirely of states is aggregated."""
    state, returned = core.flow_state_from_return(3)
    assert state.result() == 3 and returned == 3
    assert core.flow_state_from_return([S.Completed(data=1), S.Completed(data=2)])[0].is_completed()
    both = [S.Completed(data=1), S.Failed(data=KeyError("k"))]
    failed, returned = core.flow_state_from_return(both)
    assert failed.is_failed() and failed.message == "1/2 states failed." and returned is both
    with pytest.raises(KeyError):
        failed.result()
    assert failed.result(raise_on_failure=False) is both
    # A dict of states, or a mix of states and plain values, is not aggregated: the run completes.
    assert core.flow_state_from_return({"a": S.Failed(data=KeyError("k"))})[0].is_completed()
    assert core.flow_state_from_return(("bar", S.Failed()))[0].is_completed()
    returned_state = S.Failed(message="custom")
    assert core.flow_state_from_return(returned_state)[0] is returned_state
