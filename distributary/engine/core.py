"""The engine's decisions, in plain Python with no I/O: retry or fail, how long to wait, which final state.

Both the sync and the async drivers (engine/drivers.py) and every runner use these, so a rule changes in one place.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from .. import states as S
from ..errors import ConfigurationError, TaskRunTimeoutError, UpstreamTaskError, WorkerCrashedError
from ..states import State

MAX_BACKOFF_RETRIES = 50


def exponential_backoff(backoff_factor: float) -> Callable[[int], list[float]]:
    """`retry_delay_seconds=exponential_backoff(backoff_factor=2)` waits 2, 4, 8, ... seconds between retries."""
    if backoff_factor < 0:
        raise ConfigurationError(f"backoff_factor must be >= 0, got {backoff_factor}")

    def retry_backoff_callable(retries: int) -> list[float]:
        retries = min(retries, MAX_BACKOFF_RETRIES)
        return [backoff_factor * max(0, 2**r) for r in range(retries)]

    return retry_backoff_callable


def normalize_retry_delays(delay: float | Sequence[float] | Callable[[int], Sequence[float]] | None,
                           retries: int) -> tuple[float, ...]:
    """The per-retry delays as a tuple (the last one repeats when there are more retries than delays)."""
    if delay is None:
        return (0.0,)
    if callable(delay):
        delay = delay(retries)
    if isinstance(delay, (int, float)):
        if delay < 0:
            raise ConfigurationError(f"retry_delay_seconds must be >= 0, got {delay}")
        return (float(delay),)
    delays = tuple(float(d) for d in delay)
    if any(d < 0 for d in delays):
        raise ConfigurationError(f"retry_delay_seconds must all be >= 0, got {list(delays)}")
    if len(delays) > MAX_BACKOFF_RETRIES:
        raise ConfigurationError(f"retry_delay_seconds may list at most {MAX_BACKOFF_RETRIES} delays")
    return delays or (0.0,)


def retry_delay(delays: tuple[float, ...], retry_number: int, jitter_factor: float | None,
                rng: random.Random | None = None) -> float:
    """Delay before retry number `retry_number` (1-based). With a jitter factor j the delay is drawn uniformly
    from [d, d * (1 + j)], so retries of many runs spread out instead of hitting a service together."""
    d = delays[min(retry_number - 1, len(delays) - 1)]
    if jitter_factor:
        d = d * (1.0 + (rng or random).random() * jitter_factor)
    return d


def failed_state_for(exc: BaseException, run_name: str) -> State:
    """The state a run ends in after its code raised `exc`."""
    if isinstance(exc, TaskRunTimeoutError):
        return S.TimedOut(message=str(exc), data=exc)
    if isinstance(exc, UpstreamTaskError):
        return S.NotReady(message=str(exc), data=exc)
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return S.Crashed(message=f"Run {run_name!r} was interrupted by {type(exc).__name__}.", data=exc)
    return S.Failed(message=f"Task run encountered an exception {type(exc).__name__}: {exc}", data=exc)


def should_retry(retries: int, run_count: int, state: State, condition: Callable[[], bool] | None) -> bool:
    """Retry when attempts are left, the attempt failed (or its worker died under it: a crash the run's code did
    not cause) and the user's condition (if any) agrees."""
    if run_count > retries or not (state.is_failed() or state.is_crashed() and isinstance(state.data,
                                                                                            WorkerCrashedError)):
        return False
    if condition is None:
        return True
    return bool(condition())


def next_retry(retries: int, delays: tuple[float, ...], jitter_factor: float | None, run_count: int, state: State,
               condition: Callable[[], bool] | None = None) -> float | None:
    """The retry rule of every run (task or flow, in process or after a worker died): the delay before the next
    attempt of a run whose attempt number `run_count` ended in `state`, or None when it does not retry."""
    if not should_retry(retries, run_count, state, condition):
        return None
    return retry_delay(delays, run_count, jitter_factor)


def is_state_collection(value: Any) -> bool:
    """A non-empty list, tuple or set made only of states (Prefect aggregates exactly these)."""
    return isinstance(value, (list, tuple, set, frozenset)) and bool(value) and all(
        isinstance(v, State) for v in value)


def aggregate_states(states: Any) -> State:
    """The state of a run that returned a collection of states, with the collection as its data (Prefect 3's
    rule: any cancelled -> Cancelled, else any failed or crashed -> Failed, else any not final -> Pending)."""
    group = list(states)
    total = len(group)
    cancelled = sum(1 for s in group if s.is_cancelled())
    failed = sum(1 for s in group if s.is_failed() or s.is_crashed())
    not_final = sum(1 for s in group if not s.is_final())
    if cancelled:
        return S.Cancelled(message=f"{cancelled}/{total} states cancelled.", data=states)
    if failed:
        return S.Failed(message=f"{failed}/{total} states failed.", data=states)
    if not_final:
        return S.Pending(message=f"{not_final}/{total} states are not final.", data=states)
    return S.Completed(message="All states completed.", data=states)


def state_from_return(value: Any) -> State | None:
    """The final state a run's return value implies, or None for a plain value (then Completed with it).
    A returned State is the final state (Completed(data=x) -> result x); a collection made only of states
    decides by `aggregate_states`; anything else, mixes included, completes."""
    if isinstance(value, State):
        return value
    if is_state_collection(value):
        return aggregate_states(value)
    return None


def flow_state_from_return(value: Any) -> tuple[State, Any]:
    """(final state, what the call returns) for a flow run that returned `value`, as Prefect 3: futures in it
    (also nested) are waited for and replaced by their final states; then a State is the final state, a
    collection made only of states is aggregated, and anything else completes with the value as data.
    Generators are consumed into lists."""
    import types

    from .futures import TaskRunFuture
    from .resolve import map_nested

    def leaf(v: Any) -> Any:
        if isinstance(v, TaskRunFuture):
            v.wait()
            return v.state
        return v

    if isinstance(value, types.GeneratorType):
        value = list(value)
    resolved = leaf(value) if isinstance(value, TaskRunFuture) else map_nested(value, leaf)
    final = state_from_return(resolved)
    if final is None:
        final = S.Completed(data=resolved)
    return final, resolved
