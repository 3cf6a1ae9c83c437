"""Cache policies, as in Prefect 3: how a task run's cache key is computed from its inputs, source and run.

    from distributary.cache_policies import INPUTS, TASK_SOURCE, NO_CACHE
    @task(cache_policy=INPUTS + TASK_SOURCE)            # same inputs and same code -> cached
    @task(cache_policy=INPUTS - "client")              # leave an unhashable argument out of the key

Every key computed by a policy here includes the task's `task_key` (module + qualified name), so two different
tasks with equal inputs never share a key. A key from `cache_key_fn` is used exactly as returned.
One deliberate difference from Prefect: NO_CACHE absorbs, so `NO_CACHE + INPUTS` still caches nothing.
"""
from __future__ import annotations

import copy
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .errors import CacheKeyError, ConfigurationError
from .hashing import finish_hash, hash_parameters, hash_prefix, source_of, stable_hash

CacheKeyFn = Callable[[Any, dict[str, Any]], Optional[str]]


@dataclass
class CachePolicy:
    """Base of all cache policies. Subclass it and implement `compute_key`.

    `key_storage` (a result store URL or `ResultStore`) is where the task's cache records (and, in distributary,
    their data) live; `isolation_level` ("READ_COMMITTED" or "SERIALIZABLE") says whether computing a key takes
    a lock on it, and `lock_manager` (see `distributary.locking`) which lock: without one, a lease in the store.
    """

    key_storage: Any = None
    isolation_level: Any = None
    lock_manager: Any = None

    @classmethod
    def from_cache_key_fn(cls, cache_key_fn: CacheKeyFn) -> "CacheKeyFnPolicy":
        return CacheKeyFnPolicy(cache_key_fn=cache_key_fn)

    def configure(self, key_storage: Any = None, lock_manager: Any = None,
                  isolation_level: Any = None) -> "CachePolicy":
        """A copy with the given key storage, lock manager and/or isolation level (Prefect 3's idiom:
        `INPUTS.configure(isolation_level="SERIALIZABLE")`). A misspelt isolation level is refused."""
        from .transactions import parse_isolation_level

        new = copy.copy(self)
        if key_storage is not None:
            new.key_storage = key_storage
        if lock_manager is not None:
            new.lock_manager = lock_manager
        if isolation_level is not None:
            new.isolation_level = parse_isolation_level(isolation_level)
        return new

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        """The cache key, or None for "do not cache this run"."""
        raise NotImplementedError(f"{type(self).__name__} must implement compute_key()")

    def __add__(self, other: "CachePolicy") -> "CachePolicy":
        if not isinstance(other, CachePolicy):
            return NotImplemented
        if isinstance(other, NoCache):
            return other
        return CompoundCachePolicy(policies=[self, other], **_merged_settings(self, other))

    def __sub__(self, other: str) -> "CachePolicy":
        # Only policies that hash inputs can leave one out; for the others it changes nothing (as in Prefect).
        _check_input_name(other)
        return self


@dataclass(init=False)
class CacheKeyFnPolicy(CachePolicy):
    """The key is whatever `cache_key_fn(task_ctx, inputs)` returns (None: do not cache)."""

    cache_key_fn: Optional[CacheKeyFn] = None

    def __init__(self, cache_key_fn: Optional[CacheKeyFn] = None, *, key_storage: Any = None,
                 isolation_level: Any = None, lock_manager: Any = None) -> None:
        super().__init__(key_storage=key_storage, isolation_level=isolation_level, lock_manager=lock_manager)
        self.cache_key_fn = cache_key_fn

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        if self.cache_key_fn is None:
            return None
        key = self.cache_key_fn(task_ctx, inputs)
        if key is not None and not isinstance(key, str):
            name = getattr(self.cache_key_fn, "__qualname__", repr(self.cache_key_fn))
            raise CacheKeyError(f"cache_key_fn {name} returned a {type(key).__name__} ({key!r}); it must return a "
                                "str (the key) or None (do not cache).")
        return key


@dataclass
class CompoundCachePolicy(CachePolicy):
    """Several policies: the key is a hash of their keys (those that are None are left out)."""

    policies: list[CachePolicy] = field(default_factory=list)

    def __post_init__(self) -> None:
        flat = [p for policy in self.policies
                for p in (policy.policies if isinstance(policy, CompoundCachePolicy) else [policy])]
        inputs = [p for p in flat if isinstance(p, Inputs)]
        self.policies = [p for p in flat if not isinstance(p, Inputs)]
        if inputs:  # one Inputs policy, excluding everything any of them excluded
            self.policies.append(Inputs(exclude=sorted({name for p in inputs for name in p.exclude})))

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        if any(isinstance(p, NoCache) for p in self.policies):
            return None
        keys = [p.compute_key(task_ctx, inputs, flow_parameters, **kwargs) for p in self.policies]
        keys = [k for k in keys if k is not None]
        if not keys:
            return None
        return stable_hash("compound", *keys)

    def __add__(self, other: CachePolicy) -> CachePolicy:
        if not isinstance(other, CachePolicy):
            return NotImplemented
        if isinstance(other, NoCache):
            return other
        return CompoundCachePolicy(policies=[*self.policies, other], **_merged_settings(self, other))

    def __sub__(self, other: str) -> CachePolicy:
        _check_input_name(other)
        if not any(isinstance(p, Inputs) for p in self.policies):
            return self
        return CompoundCachePolicy(policies=[*self.policies, Inputs(exclude=[other])],
                                   key_storage=self.key_storage, isolation_level=self.isolation_level,
                                   lock_manager=self.lock_manager)


@dataclass
class NoCache(CachePolicy):
    """Never cache: the key is always None, and adding any policy to it keeps it so."""

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        return None

    def __add__(self, other: CachePolicy) -> CachePolicy:
        if not isinstance(other, CachePolicy):
            return NotImplemented
        return self


@dataclass
class Inputs(CachePolicy):
    """The key hashes the task's inputs (arguments), except those named in `exclude`."""

    exclude: list[str] = field(default_factory=list)

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        if not inputs:
            return None  # as in Prefect: a task without inputs has no inputs key
        # = stable_hash("inputs", task key, hash_parameters(inputs, exclude)), the first two hashed once per task
        return finish_hash(_prefix("inputs", _task_key(task_ctx)),
                           hash_parameters(inputs, exclude=self.exclude and set(self.exclude)))

    def __sub__(self, other: str) -> CachePolicy:
        _check_input_name(other)
        return Inputs(exclude=[*self.exclude, other], key_storage=self.key_storage,
                      isolation_level=self.isolation_level, lock_manager=self.lock_manager)


@dataclass
class TaskSource(CachePolicy):
    """The key hashes the source code of the task's function (falling back to its code object)."""

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        if task_ctx is None:
            return None
        task = task_ctx.task
        source = getattr(task, "source_code", None)
        if source:
            return stable_hash("task_source", _task_key(task_ctx), source)
        fn = task.fn
        task_key = _task_key(task_ctx)
        try:  # the key of a function's source, made once per function (reading the source is slow)
            known = _SOURCE_KEYS.get(fn)
        except TypeError:  # a callable that cannot be weakly referenced or hashed
            return stable_hash("task_source", task_key, source_of(fn))
        if known is None or known[0] != task_key:
            known = (task_key, stable_hash("task_source", task_key, source_of(fn)))
            _SOURCE_KEYS[fn] = known
        return known[1]


@dataclass
class FlowParameters(CachePolicy):
    """The key hashes the parameters of the flow run the task runs in."""

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        if not flow_parameters:
            return None
        try:
            parameters = hash_parameters(flow_parameters)
        except CacheKeyError as exc:
            raise CacheKeyError(f"The flow parameters cannot be hashed for FLOW_PARAMETERS: {exc.__cause__ or exc}. "
                                "Leave FLOW_PARAMETERS out of the cache policy, or pass a cache_key_fn.") from exc
        return stable_hash("flow_parameters", _task_key(task_ctx), parameters)


@dataclass
class RunId(CachePolicy):
    """The key is the flow run's id (or the task run's id outside a flow): cached within one run only."""

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        if task_ctx is None:
            return None
        run_id = getattr(task_ctx.task_run, "flow_run_id", None)
        if run_id is None:
            run_id = task_ctx.task_run.id
        return stable_hash("run_id", _task_key(task_ctx), str(run_id))


_SOURCE_KEYS: weakref.WeakKeyDictionary[Any, tuple[Any, str]] = weakref.WeakKeyDictionary()
_PREFIXES: dict[tuple[str, Any], Any] = {}  # (policy, task key) -> hash_prefix state


def _prefix(policy: str, task_key: Any) -> Any:
    """The hashed start of the keys `policy` makes for the task `task_key`: `stable_hash(policy, task_key, x)`
    = `finish_hash(_prefix(policy, task_key), x)`."""
    got = _PREFIXES.get((policy, task_key))
    if got is None:
        if len(_PREFIXES) >= 10_000:
            _PREFIXES.clear()
        got = _PREFIXES[(policy, task_key)] = hash_prefix(3, policy, task_key)
    return got


def _task_key(task_ctx: Any) -> str | None:
    if task_ctx is None:
        return None
    return getattr(task_ctx.task, "task_key", None)


def _check_input_name(name: Any) -> None:
    if not isinstance(name, str):
        raise TypeError(f"Only an input name (a str) can be subtracted from a cache policy, not {name!r}.")


def _merged_settings(a: CachePolicy, b: CachePolicy) -> dict[str, Any]:
    for attr in ("key_storage", "isolation_level", "lock_manager"):
        x, y = getattr(a, attr), getattr(b, attr)
        if x is not None and y is not None and x != y:
            raise ConfigurationError(f"Cannot add cache policies with different {attr} ({x!r} and {y!r}).")
    return {"key_storage": a.key_storage or b.key_storage, "isolation_level": a.isolation_level or b.isolation_level,
            "lock_manager": a.lock_manager or b.lock_manager}


INPUTS = Inputs()
TASK_SOURCE = TaskSource()
FLOW_PARAMETERS = FlowParameters()
RUN_ID = RunId()
NO_CACHE = NoCache()
DEFAULT = INPUTS + TASK_SOURCE + RUN_ID

__all__ = ["CachePolicy", "CacheKeyFnPolicy", "CompoundCachePolicy", "NoCache", "Inputs", "TaskSource",
           "FlowParameters", "RunId", "INPUTS", "TASK_SOURCE", "FLOW_PARAMETERS", "RUN_ID", "NO_CACHE", "DEFAULT"]
