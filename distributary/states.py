"""States of flow and task runs: a type (Completed, Failed, ...), a display name, a message and the result.

Mirrors `prefect.states`: `Completed(data=x)`, `Failed(message=...)`, `state.is_completed()`, `state.result()`.
"""
from __future__ import annotations

import datetime as _dt
import time
from enum import Enum
from typing import Any

from . import errors


class StateType(str, Enum):
    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    CANCELLING = "CANCELLING"
    CRASHED = "CRASHED"
    PAUSED = "PAUSED"

    def __str__(self) -> str:
        return self.value


FINAL_TYPES = frozenset({StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED})


class _Unset:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<unset>"

    def __reduce__(self):
        return (_unset, ())


def _unset() -> _Unset:
    return UNSET


UNSET: Any = _Unset()


class State:
    """The state of a run at one moment.

    `data` holds the run's return value (completed) or exception (failed/crashed). When the value is not kept
    in memory (`cache_result_in_memory=False`) it is loaded from `result_ref` by `result()`.
    """

    __slots__ = ("type", "name", "message", "ts", "data", "result_ref")

    def __init__(self, type: StateType | str, name: str | None = None, message: str | None = None,
                 data: Any = UNSET, result_ref: Any = None, timestamp: float | _dt.datetime | None = None):
        self.type = type if type.__class__ is StateType else StateType(str(type).upper())
        self.name = name or self.type.value.capitalize()
        self.message = message
        self.data = data
        self.result_ref = result_ref
        if timestamp is None:
            self.ts = time.time()
        elif isinstance(timestamp, _dt.datetime):
            self.ts = timestamp.timestamp()
        else:
            self.ts = float(timestamp)

    @property
    def timestamp(self) -> _dt.datetime:
        return _dt.datetime.fromtimestamp(self.ts, tz=_dt.timezone.utc)

    # -- predicates -------------------------------------------------------------------------------------------
    def is_scheduled(self) -> bool:
        return self.type is StateType.SCHEDULED

    def is_pending(self) -> bool:
        return self.type is StateType.PENDING

    def is_running(self) -> bool:
        return self.type is StateType.RUNNING

    def is_completed(self) -> bool:
        return self.type is StateType.COMPLETED

    def is_failed(self) -> bool:
        return self.type is StateType.FAILED

    def is_crashed(self) -> bool:
        return self.type is StateType.CRASHED

    def is_cancelled(self) -> bool:
        return self.type is StateType.CANCELLED

    def is_cancelling(self) -> bool:
        return self.type is StateType.CANCELLING

    def is_paused(self) -> bool:
        return self.type is StateType.PAUSED

    def is_final(self) -> bool:
        return self.type in FINAL_TYPES

    # -- result -----------------------------------------------------------------------------------------------
    def result(self, raise_on_failure: bool = True, fetch: bool = True) -> Any:
        """The run's return value. For a failed, crashed or cancelled run, raise its exception (or return it
        with `raise_on_failure=False`). A run that has not finished raises `UnfinishedRun`."""
        t = self.type
        if t is StateType.COMPLETED:
            if self.data is UNSET:
                if self.result_ref is not None and fetch:
                    return self.result_ref.load()
                return None
            return self.data
        if t in (StateType.FAILED, StateType.CRASHED, StateType.CANCELLED):
            if not raise_on_failure and _is_state_collection(self.data):
                return self.data  # a run that failed because states it returned failed: those states
            exc = self.exception()
            if raise_on_failure:
                raise exc
            return exc
        exc = self.data if isinstance(self.data, BaseException) else errors.UnfinishedRun(
            f"Run is in {t.value} state ({self.name}); its result is not available."
            + (f" {self.message}" if self.message else ""))
        if raise_on_failure:
            raise exc
        return exc

    def exception(self) -> BaseException:
        """The exception a non-completed final state carries, made up from its message if it has none."""
        if isinstance(self.data, BaseException):
            return self.data
        if _is_state_collection(self.data):  # the first of the returned states that did not complete
            for inner in self.data:
                if inner.type in (StateType.FAILED, StateType.CRASHED, StateType.CANCELLED):
                    return inner.exception()
        msg = self.message or f"Run ended in state {self.name}."
        cls = {StateType.CRASHED: errors.CrashedRun, StateType.CANCELLED: errors.CancelledRun}.get(
            self.type, errors.FailedRun)
        return cls(msg)

    def copy(self, **changes: Any) -> State:
        new = State(self.type, self.name, self.message, self.data, self.result_ref, self.ts)
        for k, v in changes.items():
            setattr(new, k, v)
        return new

    def without_data(self) -> State:
        """A copy that does not hold the value (for shipping state histories cheaply)."""
        data = self.data if isinstance(self.data, BaseException) else UNSET
        return State(self.type, self.name, self.message, data, self.result_ref, self.ts)

    def __repr__(self) -> str:
        parts = [f"message={self.message!r}"] if self.message else []
        if self.name.upper() != self.type.value:
            parts.append(f"type={self.type.value}")
        return f"{self.name}({', '.join(parts)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, State):
            return NotImplemented
        return (self.type, self.name, self.message, self.ts) == (other.type, other.name, other.message, other.ts)

    __hash__ = object.__hash__


def _is_state_collection(value: Any) -> bool:
    return isinstance(value, (list, tuple, set, frozenset)) and bool(value) and all(
        isinstance(v, State) for v in value)


def Scheduled(message: str | None = None, name: str = "Scheduled", **kw: Any) -> State:
    return State(StateType.SCHEDULED, name, message, **kw)


def Pending(message: str | None = None, name: str = "Pending", **kw: Any) -> State:
    return State(StateType.PENDING, name, message, **kw)


def Running(message: str | None = None, name: str = "Running", **kw: Any) -> State:
    return State(StateType.RUNNING, name, message, **kw)


def Completed(message: str | None = None, data: Any = UNSET, name: str = "Completed", **kw: Any) -> State:
    return State(StateType.COMPLETED, name, message, data, **kw)


def Failed(message: str | None = None, data: Any = UNSET, name: str = "Failed", **kw: Any) -> State:
    return State(StateType.FAILED, name, message, data, **kw)


def Crashed(message: str | None = None, data: Any = UNSET, name: str = "Crashed", **kw: Any) -> State:
    return State(StateType.CRASHED, name, message, data, **kw)


def Cancelled(message: str | None = None, data: Any = UNSET, name: str = "Cancelled", **kw: Any) -> State:
    return State(StateType.CANCELLED, name, message, data, **kw)


def Paused(message: str | None = None, name: str = "Paused", **kw: Any) -> State:
    return State(StateType.PAUSED, name, message, **kw)


def Retrying(message: str | None = None, **kw: Any) -> State:
    return State(StateType.RUNNING, "Retrying", message, **kw)


def AwaitingRetry(message: str | None = None, scheduled_time: Any = None, **kw: Any) -> State:
    return State(StateType.SCHEDULED, "AwaitingRetry", message, **kw)


def Cached(message: str | None = None, data: Any = UNSET, **kw: Any) -> State:
    return State(StateType.COMPLETED, "Cached", message, data, **kw)


def TimedOut(message: str | None = None, data: Any = UNSET, **kw: Any) -> State:
    return State(StateType.FAILED, "TimedOut", message, data, **kw)


def NotReady(message: str | None = None, data: Any = UNSET, **kw: Any) -> State:
    return State(StateType.PENDING, "NotReady", message, data, **kw)


def is_state(obj: Any) -> bool:
    return isinstance(obj, State)


__all__ = ["State", "StateType", "Scheduled", "Pending", "Running", "Completed", "Failed", "Crashed",
           "Cancelled", "Paused", "Retrying", "AwaitingRetry", "Cached", "TimedOut", "NotReady", "is_state"]
