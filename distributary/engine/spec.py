"""The definitions the engine reads: `TaskSpec` (built once from a `Task`) and `FlowSpec` (from a `Flow`).

Frozen and picklable. The engine and the runners read a run's options here, never the `Task` / `Flow` object's
attributes; the object itself travels only as `owner`, which is what user code receives (state hooks, retry
conditions, run contexts, cache policies). A spec pickles as its owner (and is rebuilt from it on arrival), so a
task shipped to a worker is pickled once however many specs and calls refer to it.
"""
from __future__ import annotations

import datetime as _dt
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Protocol

Hook = Callable[..., Any]
_get_spec = attrgetter("spec")


@dataclass(frozen=True, slots=True, eq=False)
class TaskSpec:
    """Everything the engine needs to run a task's runs; `Task.spec` builds it (again after an option changes)."""

    owner: Any  # the Task: what hooks, retry conditions, contexts and cache policies receive
    name: str
    task_key: str  # module + qualified name: the task's identity in cache keys and dynamic run numbers
    fn: Callable[..., Any]
    invoke: Callable[..., Any]  # calls the function from a parameters dict (keyword arguments)
    isasync: bool
    tags: frozenset[str]
    task_run_name: Any
    log_prints: bool | None
    retries: int
    retry_delays: tuple[float, ...]
    retry_jitter_factor: float | None
    retry_condition_fn: Callable[..., bool] | None
    timeout_seconds: float | None
    cache_policy: Any
    cache_key_fn: Callable[..., str | None] | None
    cache_expiration: _dt.timedelta | None
    refresh_cache: bool | None
    persist_result: bool | None
    result_storage: Any
    result_serializer: Any
    result_storage_key: str | None
    cache_result_in_memory: bool
    on_running: tuple[Hook, ...]
    on_completion: tuple[Hook, ...]
    on_failure: tuple[Hook, ...]
    on_commit: tuple[Hook, ...]
    on_rollback: tuple[Hook, ...]

    def __reduce__(self) -> tuple[Any, tuple[Any]]:
        return _get_spec, (self.owner,)


@dataclass(frozen=True, slots=True, eq=False)
class FlowSpec:
    """Everything the engine needs to run a flow's runs; `Flow.spec` builds it (again after an option changes)."""

    owner: Any  # the Flow: what hooks and the flow run context receive
    name: str
    version: str | None
    invoke: Callable[..., Any]
    signature: inspect.Signature  # of the flow's function: the parameters a run (or a deployment) may give
    isasync: bool
    flow_run_name: Any
    retries: int
    retry_delays: tuple[float, ...]
    timeout_seconds: float | None
    persist_result: bool | None
    result_storage: Any
    result_serializer: Any
    cache_result_in_memory: bool
    log_prints: bool | None
    isolation_level: Any
    make_runner: Callable[[], Any]  # a new task runner for one flow run (the runners are a layer above)
    on_running: tuple[Hook, ...]
    on_completion: tuple[Hook, ...]
    on_failure: tuple[Hook, ...]
    on_cancellation: tuple[Hook, ...]
    on_crashed: tuple[Hook, ...]

    def unknown_parameters(self, names: Iterable[str]) -> list[str]:
        """The names among `names` the flow's function does not take, sorted (none when it takes **kwargs)."""
        params = self.signature.parameters
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return []
        return sorted(set(names) - set(params))

    def __reduce__(self) -> tuple[Any, tuple[Any]]:
        return _get_spec, (self.owner,)


class HasTaskSpec(Protocol):
    """What the engine takes where a task is passed in (a `Task`, to the public API)."""

    @property
    def spec(self) -> TaskSpec: ...


class HasFlowSpec(Protocol):
    """What the engine takes where a flow is passed in (a `Flow`, to the public API)."""

    @property
    def spec(self) -> FlowSpec: ...


__all__ = ["TaskSpec", "FlowSpec", "HasTaskSpec", "HasFlowSpec"]
