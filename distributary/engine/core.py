"""The engine's decisions, in plain Python with no I/O: retry or fail, how long to wait, which final state.

Both the sync and the async drivers (engine/drivers.py) and every runner use these, so a rule changes in one place.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from .. import states as S
from ..errors import ConfigurationError, TaskRunTimeoutError, UpstreamTaskError
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
    """Retry when attempts are left, the failure is retryable and the user's condition (if any) agrees."""
    if run_count > retries or not state.is_failed():
        return False
    if condition is None:
        return True
    return bool(condition())


def state_from_return(value: Any) -> State | None:
    """If a run returned a State, that is its final state (Completed(data=x) -> result x)."""
    if isinstance(value, State):
        return value
    return None


def flow_state_from_return(value: Any) -> State:
    """Final state of a flow run from its return value. A returned State is used as is; returned futures or
    states (also nested in lists, tuples, dicts) fail the flow if any of them did not complete. Returned futures
    are replaced by their results; returned states are kept."""
    from ..futures import TaskRunFuture
    from .resolve import map_nested

    if isinstance(value, State):
        return value
    found: list[State] = []

    def leaf(v: Any) -> Any:
        if isinstance(v, TaskRunFuture):
            v.wait()
            found.append(v.state)
            return v.state.result(raise_on_failure=False) if v.state.is_completed() else v.state
        if isinstance(v, State):  # returned states stay states; they only decide the flow's outcome
            found.append(v)
        return v

    resolved = map_nested(value, leaf)
    if not found:
        return S.Completed(data=value)
    bad = [s for s in found if not s.is_completed()]
    if bad:
        exc = next((s.data for s in bad if isinstance(s.data, BaseException)), None)
        msg = f"{len(bad)}/{len(found)} states failed."
        return S.Failed(message=msg, data=exc if exc is not None else S.UNSET)
    return S.Completed(message=f"All {len(found)} states completed.", data=resolved)
