"""The engine's side of results and caching: which options apply to a task run, its cache key, cache lookups
and persisting a result. The store itself lives in `distributary.results`.

Options are resolved once per task and flow run (not per task run) and travel to workers with the call.
"""
from __future__ import annotations

import datetime as _dt
import logging
import os
from typing import TYPE_CHECKING, Any, cast

from .. import settings
from .. import states as S
from ..errors import CorruptResult, DistributaryError, MissingResult, ResultStoreError, SerializationError
from ..states import State
from .spec import TaskSpec

if TYPE_CHECKING:
    from ..context import FlowRunContext, TaskRunContext

log = logging.getLogger("distributary.results")
_pid = os.getpid


class ResultOptions:
    """Everything about results that applies to one task within one flow run. Picklable."""

    __slots__ = ("persist", "storage", "serializer", "storage_key", "cache_policy", "cache_expiration",
                 "refresh_cache", "in_memory", "isolation", "lease_seconds", "lock_manager", "_store")
    _STATE = __slots__[:-1]  # what travels: the resolved store (`_store`) is resolved again where it lands

    def __init__(self, persist: bool, storage: Any, serializer: Any, storage_key: str | None, cache_policy: Any,
                 cache_expiration: _dt.timedelta | None, refresh_cache: bool, in_memory: bool, isolation: Any,
                 lease_seconds: float, lock_manager: Any = None):
        self.persist = persist
        self.storage = storage
        self.serializer = serializer
        self.storage_key = storage_key
        self.cache_policy = cache_policy
        self.cache_expiration = cache_expiration
        self.refresh_cache = refresh_cache
        self.in_memory = in_memory
        self.isolation = isolation
        self.lease_seconds = lease_seconds
        self.lock_manager = lock_manager  # a distributary.locking manager; None: the store's leases
        self._store: tuple[int, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._STATE}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)
        self._store = None

    def store(self) -> Any:
        """The result store, resolved once per process (each task run of a map asks for it several times)."""
        got = self._store
        if got is not None and got[0] == _pid():
            return got[1]
        from ..results import resolve_store

        store = resolve_store(self.storage)
        self._store = (_pid(), store)
        return store

    def get_serializer(self) -> Any:
        from ..serializers import get_serializer

        return get_serializer(self.serializer)


def _first(*values: Any) -> Any:
    for v in values:
        if v is not None:
            return v
    return None


def resolve_result_options(task: TaskSpec, flow_ctx: FlowRunContext | None) -> ResultOptions | None:
    """The result options of `task` in `flow_ctx`, or None when the run neither persists nor caches (the fast
    path: no store is touched)."""
    if flow_ctx is not None:
        cached = flow_ctx.result_options_cache.get(task, _MISSING)
        if cached is not _MISSING:
            return cast("ResultOptions | None", cached)
    flow = flow_ctx.flow_spec if flow_ctx is not None else None
    policy: Any = None
    if task.cache_key_fn is not None or task.cache_policy is not None:
        from .. import cache_policies as cp

        if task.cache_key_fn is not None:
            policy = cp.CacheKeyFnPolicy(task.cache_key_fn)
        elif not isinstance(task.cache_policy, cp.NoCache):
            policy = task.cache_policy
    caching_on = policy is not None
    persist = _first(task.persist_result, True if caching_on else None,
                     flow.persist_result if flow is not None else None)
    if persist is None:
        persist = bool(settings.get("RESULTS_PERSIST_BY_DEFAULT"))
    if not persist and caching_on:
        log.warning("Task %r sets a cache policy but persist_result=False: caching is off for it.", task.name)
        policy = None
    in_memory = task.cache_result_in_memory and (flow is None or flow.cache_result_in_memory)
    if not in_memory and not persist:
        if task.persist_result is False:
            in_memory = True  # nowhere else to keep the value
        else:
            persist = True  # results not kept in memory are loaded from the store on .result()
    isolation = None
    if persist:
        from .. import cache_policies as cp
        from ..transactions import current_isolation_level

        if policy is None and task.cache_policy is None:
            policy = cp.DEFAULT  # as in Prefect 3: persisted results are cached by the default policy
        isolation = _first(current_isolation_level(), getattr(policy, "isolation_level", None),
                           getattr(flow, "isolation_level", None))
    if not persist and in_memory:
        opts = None
    else:
        opts = ResultOptions(
            persist=persist,
            storage=_first(getattr(policy, "key_storage", None), task.result_storage,
                           flow.result_storage if flow is not None else None, settings.get("RESULTS_DEFAULT_STORAGE")),
            serializer=_first(task.result_serializer, flow.result_serializer if flow is not None else None,
                              settings.get("RESULTS_DEFAULT_SERIALIZER")),
            storage_key=task.result_storage_key,
            cache_policy=policy,
            cache_expiration=task.cache_expiration,
            refresh_cache=bool(task.refresh_cache),
            in_memory=in_memory,
            isolation=isolation,
            lease_seconds=float(settings.get("RESULTS_LOCK_LEASE_SECONDS")),
            lock_manager=getattr(policy, "lock_manager", None),
        )
    if flow_ctx is not None:
        flow_ctx.result_options_cache[task] = opts
    return opts


_MISSING = object()


def compute_key(opts: ResultOptions, ctx: TaskRunContext) -> str | None:
    """The key the run's result is stored under and looked up by (None: not cached)."""
    if opts.storage_key:
        return format_storage_key(opts.storage_key, ctx)
    if opts.cache_policy is None:
        return None
    key: str | None = opts.cache_policy.compute_key(task_ctx=ctx, inputs=ctx.parameters,
                                                    flow_parameters=ctx.flow_parameters)
    return key


def format_storage_key(template: str, ctx: TaskRunContext) -> str:
    try:
        return template.format(parameters=ctx.parameters, task_run=ctx.task_run, task=ctx.task,
                               flow_parameters=ctx.flow_parameters)
    except (KeyError, AttributeError, IndexError) as exc:
        raise DistributaryError(f"result_storage_key {template!r} of task {ctx.task.name!r} could not be "
                                f"filled in: {exc!r}. It may use {{parameters[name]}}, {{task_run.id}}, "
                                f"{{task.name}} and {{flow_parameters[name]}}.") from exc


_checked: set[tuple[Any, str]] = set()  # (flow run id, store URL) whose store answered once in this process


def store_checked(opts: ResultOptions, flow_run_id: Any) -> bool:
    """Whether the run's store was already found reachable (with its bucket) in this flow run, here."""
    return (flow_run_id, _url_of(opts)) in _checked


def check_store(opts: ResultOptions, flow_run_id: Any) -> None:
    """Once per flow run (per process), before the first task computes: the store is reachable and its bucket
    exists, else `ResultStoreError` naming it, rather than each run computing and then failing to write."""
    store = opts.store()
    store.check()
    if len(_checked) > 4096:
        _checked.clear()
    _checked.add((flow_run_id, _url_of(opts)))


def _url_of(opts: ResultOptions) -> str:
    storage = opts.storage
    return storage if isinstance(storage, str) else str(getattr(storage, "url", id(storage)))


def lookup(opts: ResultOptions, key: str) -> State | None:
    """A Cached state if the store has an unexpired result under `key`, else None. Unreadable records, and
    data that is gone or does not match its record, are misses with a warning naming the key (the run then
    recomputes and overwrites the entry)."""
    if opts.refresh_cache or opts.cache_policy is None and not opts.storage_key:
        return None
    store = opts.store()
    record = store.read_record(key)
    if record is None or record.expired:
        return None
    ref = store.ref(record)
    if not opts.in_memory:
        return S.Cached(data=S.UNSET, result_ref=ref)
    try:
        value = store.read_value(record)
    except MissingResult as exc:
        log.warning("Cache entry %r in %s has a record but no readable data (%s); recomputing.", key, store.url,
                    exc)
        return None
    except CorruptResult as exc:
        log.warning("Cache entry %r in %s does not match its record (%s); treating it as a miss, recomputing "
                    "and overwriting it.", key, store.url, exc)
        return None
    return S.Cached(data=value, result_ref=ref)


def persist(opts: ResultOptions, key: str | None, value: Any, ctx: TaskRunContext) -> Any:
    """Write `value` to the store; returns its ResultRef. Errors name the task run."""
    store = opts.store()
    run = ctx.task_run
    if key is None:
        key = run.id.hex
    expiration = (_dt.datetime.now(_dt.timezone.utc) + opts.cache_expiration
                  if opts.cache_expiration is not None else None)
    try:
        return store.write(key, value, opts.get_serializer(), expiration=expiration,
                           task_identity=ctx.task.task_key)
    except SerializationError as exc:
        raise SerializationError(f"Task run {run.name!r} could not persist its result: {exc}") from exc
    except ResultStoreError as exc:
        raise ResultStoreError(f"Task run {run.name!r} could not persist its result: {exc}") from exc
