"""`@task` and the Task object: calling, `.submit()`, `.map()` and `.with_options()`.

Mirrors `prefect.tasks`. Tasks may be called, submitted and mapped inside a flow or on their own.
"""
from __future__ import annotations

import datetime as _dt
import inspect
import types
from collections.abc import Callable, Iterable
from functools import update_wrapper
from typing import Any, Generic, TypeVar, overload

from . import settings
from . import states as S
from .engine import core
from .engine.spec import TaskSpec
from .errors import ConfigurationError

R = TypeVar("R")
exponential_backoff = core.exponential_backoff


def task_input_hash(context: Any, arguments: dict[str, Any]) -> str | None:
    """A cache key from the task's identity, its code and its arguments (Prefect's `task_input_hash`)."""
    from .hashing import task_input_hash as _hash

    return _hash(context, arguments)


def _check_hooks(name: str, hooks: Any) -> tuple[Callable, ...]:
    if hooks is None:
        return ()
    if callable(hooks):
        hooks = [hooks]
    hooks = tuple(hooks)
    for h in hooks:
        if not callable(h):
            raise ConfigurationError(f"{name} hooks must be callables taking (task, task_run, state) or "
                                     f"(flow, flow_run, state); got {h!r} of type {type(h).__name__}.")
    return hooks


def check_retry_options(owner: str, retries: Any, retry_delay_seconds: Any) -> tuple[int, tuple[float, ...]]:
    if retries is None:
        retries = 0
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigurationError(f"{owner}: retries must be a whole number >= 0, got {retries!r}.")
    return retries, core.normalize_retry_delays(retry_delay_seconds, retries)


def check_timeout(owner: str, timeout_seconds: Any) -> float | None:
    if timeout_seconds is None:
        return None
    if isinstance(timeout_seconds, _dt.timedelta):
        timeout_seconds = timeout_seconds.total_seconds()
    if not isinstance(timeout_seconds, (int, float)) or timeout_seconds <= 0:
        raise ConfigurationError(f"{owner}: timeout_seconds must be a number > 0, got {timeout_seconds!r}.")
    return float(timeout_seconds)


def unwrap_method(fn: Any) -> tuple[Any, str | None]:
    """(function, kind) for a function, a staticmethod ("static") or a classmethod ("class")."""
    if isinstance(fn, staticmethod):
        return fn.__func__, "static"
    if isinstance(fn, classmethod):
        return fn.__func__, "class"
    return fn, None


def rewrap_method(obj: Any) -> Any:
    """The function as it was decorated (for `with_options` copies)."""
    kind = obj._method_kind
    return classmethod(obj.fn) if kind == "class" else staticmethod(obj.fn) if kind == "static" else obj.fn


def bind_method(obj: Any, instance: Any, owner: Any) -> Any:
    """The descriptor protocol for tasks and flows defined in classes (as in Prefect 3): a classmethod binds the
    class, a plain function accessed on an instance binds the instance, a staticmethod binds nothing."""
    kind = obj._method_kind
    if kind == "class":
        target = owner if owner is not None else type(instance)
    elif kind == "static" or instance is None:
        return obj
    else:
        target = instance
    bound = object.__new__(type(obj))  # not copy.copy: it would go through __reduce__ and rebuild
    bound.__dict__.update(obj.__dict__)
    bound.fn = types.MethodType(obj.fn, target)
    bound._method_kind = "bound"
    bound._binder = Binder(bound.fn)
    if hasattr(bound, "_invoke"):
        bound._invoke = bound._binder.invoke
    if hasattr(bound, "_adapters"):
        bound._adapters = None
    return bound


class Binder:
    """Turns call arguments into a parameters dict quickly, and calls the function from such a dict."""

    __slots__ = ("sig", "names", "simple", "defaults", "invoke")

    def __init__(self, fn: Callable):
        self.sig = inspect.signature(fn)
        params = list(self.sig.parameters.values())
        self.names = [p.name for p in params]
        self.simple = all(p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in params)
        self.defaults = {p.name: p.default for p in params if p.default is not p.empty}
        if self.simple:
            self.invoke = fn
        else:
            sig = self.sig

            def invoke(**parameters: Any) -> Any:
                args, kwargs = [], {}
                for p in sig.parameters.values():
                    if p.name not in parameters:
                        continue
                    v = parameters[p.name]
                    if p.kind is p.POSITIONAL_ONLY:
                        args.append(v)
                    elif p.kind is p.VAR_POSITIONAL:
                        args.extend(v)
                    elif p.kind is p.VAR_KEYWORD:
                        kwargs.update(v)
                    elif p.kind is p.POSITIONAL_OR_KEYWORD and not kwargs:
                        args.append(v)
                    else:
                        kwargs[p.name] = v
                return fn(*args, **kwargs)

            self.invoke = invoke

    def bind(self, owner: str, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
        names = self.names
        if self.simple and len(args) <= len(names):
            params = dict(zip(names, args))
            if kwargs:
                for k, v in kwargs.items():
                    if k in params or k not in names:
                        return self._slow_bind(owner, args, kwargs)
                    params[k] = v
            if len(params) < len(names):
                for k, v in self.defaults.items():
                    params.setdefault(k, v)
                if len(params) < len(names):
                    return self._slow_bind(owner, args, kwargs)
            return params
        return self._slow_bind(owner, args, kwargs)

    def _slow_bind(self, owner: str, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
        try:
            bound = self.sig.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{owner}: {exc}") from None
        bound.apply_defaults()
        return dict(bound.arguments)


class Task(Generic[R]):
    """A function whose calls become observable task runs with retries, caching, hooks and futures."""

    def __init__(self, fn: Callable[..., R], name: str | None = None, description: str | None = None,
                 tags: Iterable[str] | None = None, version: str | None = None, cache_policy: Any = None,
                 cache_key_fn: Callable[..., str | None] | None = None,
                 cache_expiration: _dt.timedelta | None = None, task_run_name: Any = None,
                 retries: int | None = None, retry_delay_seconds: Any = None,
                 retry_jitter_factor: float | None = None, persist_result: bool | None = None,
                 result_storage: Any = None, result_serializer: Any = None, result_storage_key: str | None = None,
                 cache_result_in_memory: bool = True, timeout_seconds: float | None = None,
                 log_prints: bool | None = None, refresh_cache: bool | None = None,
                 on_completion: Any = None, on_failure: Any = None, on_running: Any = None,
                 on_commit: Any = None, on_rollback: Any = None,
                 retry_condition_fn: Callable[..., bool] | None = None, viz_return_value: Any = None):
        fn, self._method_kind = unwrap_method(fn)
        if not callable(fn):
            raise TypeError(f"@task needs a function, got {fn!r}")
        self.fn = fn
        self.isasync = inspect.iscoroutinefunction(fn)
        self.name: str = name or str(getattr(fn, "__name__", type(fn).__name__))
        self.description = description or inspect.getdoc(fn)
        self.tags = frozenset(tags or ())
        self.version = version
        self.task_key = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', self.name)}"
        owner = f"Task {self.name!r}"
        if retries is None:  # Prefect's task-retry defaults, read when the task is defined
            retries = settings.get("TASKS_DEFAULT_RETRIES")
        if retry_delay_seconds is None:
            retry_delay_seconds = settings.get("TASKS_DEFAULT_RETRY_DELAY_SECONDS") or None
        self.retries, self._retry_delays = check_retry_options(owner, retries, retry_delay_seconds)
        self.retry_delay_seconds = retry_delay_seconds
        if retry_jitter_factor is not None and retry_jitter_factor < 0:
            raise ConfigurationError(f"{owner}: retry_jitter_factor must be >= 0, got {retry_jitter_factor}.")
        self.retry_jitter_factor = retry_jitter_factor
        if retry_condition_fn is not None and not callable(retry_condition_fn):
            raise ConfigurationError(f"{owner}: retry_condition_fn must be a callable (task, task_run, state) -> "
                                     f"bool, got {retry_condition_fn!r}.")
        self.retry_condition_fn = retry_condition_fn
        self.timeout_seconds = check_timeout(owner, timeout_seconds)
        if cache_expiration is not None and not isinstance(cache_expiration, _dt.timedelta):
            raise ConfigurationError(f"{owner}: cache_expiration must be a datetime.timedelta, "
                                     f"got {cache_expiration!r}.")
        if cache_key_fn is not None and not callable(cache_key_fn):
            raise ConfigurationError(f"{owner}: cache_key_fn must be a callable (context, parameters) -> str.")
        self.cache_policy = cache_policy
        self.cache_key_fn = cache_key_fn
        self.cache_expiration = cache_expiration
        self.refresh_cache = refresh_cache
        self.task_run_name = task_run_name
        self.persist_result = persist_result
        self.result_storage = result_storage
        self.result_serializer = result_serializer
        self.result_storage_key = result_storage_key
        self.cache_result_in_memory = cache_result_in_memory
        self.log_prints = log_prints
        self.on_completion = _check_hooks(f"{owner} on_completion", on_completion)
        self.on_failure = _check_hooks(f"{owner} on_failure", on_failure)
        self.on_running = _check_hooks(f"{owner} on_running", on_running)
        # Transaction hooks take the transaction (Prefect's `@task.on_commit` / `@task.on_rollback`).
        self.on_commit_hooks = _check_hooks(f"{owner} on_commit", on_commit)
        self.on_rollback_hooks = _check_hooks(f"{owner} on_rollback", on_rollback)
        self.viz_return_value = viz_return_value
        self._binder = Binder(fn)
        self._invoke = self._binder.invoke
        update_wrapper(self, fn)  # type: ignore[arg-type]
        self.__dict__.pop("_spec", None)  # a spec copied from a wrapped Task belongs to that task

    # -- the definition the engine reads ----------------------------------------------------------------------
    @property
    def spec(self) -> TaskSpec:
        """This task's options as the engine reads them, frozen; built on first use and again after any
        attribute of the task changes (hooks added with a decorator included)."""
        spec: TaskSpec | None = self.__dict__.get("_spec")
        if spec is None:
            spec = self.__dict__["_spec"] = TaskSpec(
                owner=self, name=self.name, task_key=self.task_key, fn=self.fn, invoke=self._invoke,
                isasync=self.isasync, tags=self.tags, task_run_name=self.task_run_name, log_prints=self.log_prints,
                retries=self.retries, retry_delays=self._retry_delays, retry_jitter_factor=self.retry_jitter_factor,
                retry_condition_fn=self.retry_condition_fn, timeout_seconds=self.timeout_seconds,
                cache_policy=self.cache_policy, cache_key_fn=self.cache_key_fn,
                cache_expiration=self.cache_expiration, refresh_cache=self.refresh_cache,
                persist_result=self.persist_result, result_storage=self.result_storage,
                result_serializer=self.result_serializer, result_storage_key=self.result_storage_key,
                cache_result_in_memory=self.cache_result_in_memory, on_running=self.on_running,
                on_completion=self.on_completion, on_failure=self.on_failure, on_commit=self.on_commit_hooks,
                on_rollback=self.on_rollback_hooks)
        return spec

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        self.__dict__.pop("_spec", None)  # the spec is rebuilt from the changed task on next use

    # -- options ----------------------------------------------------------------------------------------------
    _OPTION_NAMES = ("name", "description", "tags", "version", "cache_policy", "cache_key_fn", "cache_expiration",
                     "task_run_name", "retries", "retry_delay_seconds", "retry_jitter_factor", "persist_result",
                     "result_storage", "result_serializer", "result_storage_key", "cache_result_in_memory",
                     "timeout_seconds", "log_prints", "refresh_cache", "on_completion", "on_failure", "on_running",
                     "retry_condition_fn", "viz_return_value")

    def with_options(self, **changes: Any) -> Task[R]:
        """A copy of this task with some options changed."""
        unknown = set(changes) - set(self._OPTION_NAMES) - {"on_commit", "on_rollback"}
        if unknown:
            raise TypeError(f"with_options() got unknown option(s) {sorted(unknown)}; "
                            f"valid: {', '.join(self._OPTION_NAMES)}")
        opts = self._options()
        opts.update(changes)
        return Task(rewrap_method(self), **opts)

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        return bind_method(self, instance, owner)

    def _options(self) -> dict[str, Any]:
        opts = {k: getattr(self, k) for k in self._OPTION_NAMES}
        opts["on_commit"], opts["on_rollback"] = self.on_commit_hooks, self.on_rollback_hooks
        return opts

    def on_commit(self, fn: Callable) -> Callable:
        """Decorate a hook `fn(transaction)` run when the transaction this task's run completed in commits."""
        self.on_commit_hooks = (*self.on_commit_hooks, *_check_hooks("on_commit", fn))
        return fn

    def on_rollback(self, fn: Callable) -> Callable:
        """Decorate a hook `fn(transaction)` run when the transaction this task's run completed in rolls back."""
        self.on_rollback_hooks = (*self.on_rollback_hooks, *_check_hooks("on_rollback", fn))
        return fn

    def on_completion_hook(self, fn: Callable) -> Callable:
        self.on_completion = (*self.on_completion, *_check_hooks("on_completion", fn))
        return fn

    def on_failure_hook(self, fn: Callable) -> Callable:
        self.on_failure = (*self.on_failure, *_check_hooks("on_failure", fn))
        return fn

    def bind(self, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
        return self._binder.bind(f"Task {self.name!r}", args, kwargs)

    # -- running ----------------------------------------------------------------------------------------------
    def __call__(self, *args: Any, return_state: bool = False, wait_for: Any = None, **kwargs: Any) -> Any:
        """Run the task now, in this thread, and return its result (or its final State with return_state=True).
        In an async context an async task returns an awaitable."""
        from .engine.calls import make_call

        call = make_call(self, self.bind(args, kwargs), wait_for)
        if self.isasync and _in_event_loop():
            return _await_call(call, return_state)
        from .engine import run_call
        from .engine.resolve import find_upstreams, wait_all

        if wait_for:
            wait_all(find_upstreams({}, wait_for))
        state = run_call(call)
        return state if return_state else _linked(call, _call_result(call, state))

    def submit(self, *args: Any, return_state: bool = False, wait_for: Any = None, **kwargs: Any) -> Any:
        """Run the task on the flow's task runner; returns a future at once."""
        from .runners import current_runner

        fut = current_runner().submit(self, self.bind(args, kwargs), wait_for=wait_for)
        if return_state:
            fut.wait()
            return fut.state
        return fut

    def map(self, *args: Any, return_state: bool = False, wait_for: Any = None, **kwargs: Any) -> Any:
        """One task run per element of the iterable arguments (others are broadcast; `unmapped(x)` broadcasts
        an iterable). Returns a FutureList."""
        from .runners import current_runner

        futures = current_runner().map(self, self.bind_for_map(args, kwargs), wait_for=wait_for)
        if return_state:
            futures.wait()
            return [f.state for f in futures]
        return futures

    def bind_for_map(self, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
        sig = self._binder.sig
        try:
            bound = sig.bind_partial(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"Task {self.name!r}: {exc}") from None
        return dict(bound.arguments)

    def __repr__(self) -> str:
        return f"Task(name={self.name!r})"

    def __reduce__(self):
        # Rebuild from the function and options (the Binder holds a Signature, which pickles poorly).
        return (_rebuild_task, (self.fn, self._options()))


def _rebuild_task(fn: Callable, options: dict[str, Any]) -> Task:
    return Task(fn, **options)


def _in_event_loop() -> bool:
    import asyncio

    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False


async def _await_call(call: Any, return_state: bool) -> Any:
    from .engine import run_call_async

    state = await run_call_async(call)
    return state if return_state else _linked(call, _call_result(call, state))


def _linked(call: Any, value: Any) -> Any:
    """`value`, which a direct call returned, remembered by the flow run so that passing it on to another task
    records this run as that one's upstream (`b(a())` draws an edge in the run graph, as in Prefect)."""
    from .context import flow_run_ctx
    from .engine.resolve import link_result

    ctx = flow_run_ctx.get()
    if ctx is not None:
        link_result(ctx.result_runs, value, str(call.task_run.id))
    return value


def _call_result(call: Any, state: Any) -> Any:
    """What calling a task returns, as in Prefect 3: exactly what the function returned (also a State or a
    collection of states); else (it raised, was cached, or did not run) the state's result, which raises."""
    returned = call.returned
    if returned is not S.UNSET:
        return returned
    return state.result()


@overload
def task(__fn: Callable[..., R], **options: Any) -> Task[R]: ...


@overload
def task(**options: Any) -> Callable[[Callable[..., R]], Task[R]]: ...


def task(__fn: Callable[..., R] | None = None, **options: Any) -> Any:
    """Decorate a function as a task, bare (`@task`) or with options (`@task(retries=3)`)."""
    if __fn is not None:
        return Task(__fn, **options)
    return lambda fn: Task(fn, **options)


__all__ = ["Task", "task", "exponential_backoff", "task_input_hash"]
