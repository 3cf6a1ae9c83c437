"""The steps of a task run: a generator that makes every decision (inputs, cache, states, retries, persistence,
hooks) once and yields to its driver only what differs between sync and async code. `run_call(call)` runs a
task run in this thread, `run_call_async(call)` on the running event loop.
"""
from __future__ import annotations

import inspect
import logging
import time
import types
from collections.abc import Callable, Generator
from functools import partial
from typing import Any

from .. import states as S
from ..context import TaskRunContext, task_run_ctx
from ..errors import ResultStoreError, UpstreamTaskError
from ..logging import engine_logger, reset_log_prints, set_log_prints
from ..runs import TaskRun
from ..states import State, StateType
from ..transactions import get_transaction
from . import caching, core, tag_limits, transitions
from .calls import TaskCall
from .drivers import CALL, IO, SLEEP, Step, async_caller, drive, drive_async, run_coro_sync, sync_caller
from .resolve import resolve_parameters
from .spec import TaskSpec

_log: logging.Logger | None = None
# Return values that are neither a State, a collection of states nor a generator: taken as they are.
_PLAIN = frozenset({int, float, str, bytes, bool, type(None), dict})


def _logger() -> logging.Logger:
    global _log
    if _log is None:
        _log = engine_logger("task_runs")
    return _log


def _steps(call: TaskCall) -> Generator[Step, Any, State]:
    task = call.spec
    run = call.task_run
    run.start_ts = time.time()
    try:
        params = resolve_parameters(call.parameters)
    except UpstreamTaskError as exc:
        return _finish(task, run, S.NotReady(message=str(exc), data=exc), None)
    except Exception as exc:  # e.g. a result reference that cannot be loaded
        return _finish(task, run, core.failed_state_for(exc, run.name), None)

    opts = call.result_options
    ctx = TaskRunContext(task.owner, run, params, call.flow_parameters, call.log_prints, opts)
    token = task_run_ctx.set(ctx)
    lp_token = set_log_prints(bool(call.log_prints))  # a task's False overrides its flow's True
    lease: Any = None
    slots: Any = None  # the run's tag concurrency slots
    try:
        key = None
        while opts is not None:  # a store error here is retried like any failure, before anything computes
            try:
                if not caching.store_checked(opts, run.flow_run_id):
                    yield (IO, partial(caching.check_store, opts, run.flow_run_id))
                key = caching.compute_key(opts, ctx)
                run.cache_key = key
                hit = (yield (IO, partial(caching.lookup, opts, key))) if key is not None else None
                if hit is None and key is not None and _serializable(opts):
                    lock = _lock(opts, key, run)
                    yield (IO, lock.__enter__)
                    lease = lock
                    # another run may have computed it while we waited
                    hit = yield (IO, partial(caching.lookup, opts, key))
            except Exception as exc:
                if lease is not None:
                    lease, held = None, lease
                    held.__exit__(None, None, None)
                failed = core.failed_state_for(exc, run.name)
                run.run_count += 1  # the attempt is charged: a store that stays down does not retry for ever
                if isinstance(exc, ResultStoreError) and (yield from retry(
                        run, task.retries, task.retry_delays, task.retry_jitter_factor, failed,
                        _condition(task, run), _retrying(run, task.retries, "the result store"))):
                    continue
                return _finish(task, run, failed, ctx)
            if hit is not None:
                return _finish(task, run, hit, ctx)
            break

        unsaved: tuple[Any, State | None] | None = None  # computed, but writing the result failed

        def attempt(running: State) -> Generator[Step, Any, tuple[State, bool]]:
            nonlocal unsaved
            for hook in task.on_running:
                run_hook(hook, task.owner, run, running)
            call.returned = S.UNSET
            try:
                if unsaved is None:
                    value = yield (CALL, params)
                    if value.__class__ in _PLAIN:  # most return values: no generator to consume, not a State
                        final = None
                    else:
                        value = _consume(value)
                        final = core.state_from_return(value)
                    if run.abandoned:  # given up while the function ran: its outcome is not kept nor persisted
                        return run.state, False
                else:  # this attempt retries the write, not the function
                    (value, final), unsaved = unsaved, None
                call.returned = value
                try:
                    if final is None:
                        final = S.Completed(data=value) if opts is None else (
                            yield from _completed(value, opts, key, ctx))
                    elif final.is_completed() and opts is not None and opts.persist and final.data is not S.UNSET:
                        final.result_ref = yield from _persist_returned(opts, key, final.data, ctx)
                except ResultStoreError:
                    unsaved = (value, final)  # final: None, or the state the function returned
                    raise
                return final, True
            except (KeyboardInterrupt, SystemExit) as exc:
                _finish(task, run, core.failed_state_for(exc, run.name), ctx)
                raise
            except BaseException as exc:
                call.returned = S.UNSET
                return core.failed_state_for(exc, run.name), not run.abandoned

        def on_retry(failed: State, delay: float) -> None:
            if unsaved is not None:  # this retry writes the result again, it does not call the function
                _retrying(run, task.retries, "writing the result")(failed, delay)

        if run.tags:
            try:
                slots = yield from tag_limits.take_slots(run)
            except Exception as exc:  # the limit could not be used (the store refused): the run fails, saying why
                return _finish(task, run, core.failed_state_for(exc, run.name), ctx)
        final = yield from attempts(run, task.retries, task.retry_delays, task.retry_jitter_factor, attempt,
                                    _condition(task, run), on_retry)
        return _finish(task, run, final, ctx)
    finally:
        tag_limits.give_back(slots)
        if lease is not None:
            lease.__exit__(None, None, None)
        reset_log_prints(lp_token)
        task_run_ctx.reset(token)


def attempts(run: Any, retries: int, delays: tuple[float, ...], jitter: float | None,
             attempt: Callable[[State], Generator[Step, Any, tuple[State, bool]]],
             condition: Callable[[State], bool] | None = None,
             on_retry: Callable[[State, float], None] | None = None) -> Generator[Step, Any, State]:
    """The one attempt loop of task runs and flow runs. Each attempt moves the run to Running (Retrying after the
    first) and runs `attempt(running_state)`, which returns (its state, may it be retried?); a failed state that
    may be retried goes through `retry` (the rule, AwaitingRetry, the delay) and the next attempt. Returns the
    state of the last attempt (the caller finishes the run with it)."""
    while True:
        if run.abandoned:  # given up (a flow timeout) while it waited to retry: no further attempt
            last: State = run.state
            return last
        run.run_count += 1
        running = transitions.set_state(run, S.Running() if run.run_count == 1 else S.Retrying())
        state, retryable = yield from attempt(running)
        if not retryable or run.run_count > retries:  # no attempt left (most runs): skip the rule's other checks
            return state
        if not (yield from retry(run, retries, delays, jitter, state, condition, on_retry)):
            return state


def retry(run: Any, retries: int, delays: tuple[float, ...], jitter: float | None, failed: State,
          condition: Callable[[State], bool] | None = None,
          on_retry: Callable[[State, float], None] | None = None) -> Generator[Step, Any, bool]:
    """After a failed attempt of any run: if `core.next_retry` (the rule) allows, AwaitingRetry,
    `on_retry(failed, delay)` (a log line), wait the delay, True; else False."""
    delay = core.next_retry(retries, delays, jitter, run.run_count, failed,
                            (lambda: condition(failed)) if condition is not None else None)
    if delay is None:
        return False
    transitions.set_state(run, S.AwaitingRetry(message=f"Retry {run.run_count} of {retries} in {delay:.3g}s"))
    if on_retry is not None:
        on_retry(failed, delay)
    if delay > 0:
        yield (SLEEP, delay)
    return True


def _retrying(run: TaskRun, retries: int, what: str) -> Callable[[State, float], None]:
    """Logs a retry of part of a task run (`what`: the result store, writing the result) at WARNING."""
    def log(failed: State, delay: float) -> None:
        _logger().warning("Task run %r: %s failed (%s); retry %d of %d in %.3gs.", run.name, what, failed.message,
                          run.run_count, retries, delay, extra={"run_name": run.name})

    return log


def _condition(task: TaskSpec, run: TaskRun) -> Callable[[State], bool] | None:
    """The task's retry condition, called as Prefect calls it: (task, task_run, state)."""
    cond = task.retry_condition_fn
    return (lambda failed: cond(task.owner, run, failed)) if cond is not None else None


def _serializable(opts: caching.ResultOptions) -> bool:
    iso = opts.isolation
    return iso is not None and str(getattr(iso, "value", iso)).upper() == "SERIALIZABLE"


def _consume(value: Any) -> Any:
    """A generator a task returned is consumed into a list (its values are the task's result)."""
    if isinstance(value, types.GeneratorType):
        return list(value)
    if inspect.isasyncgen(value):
        async def collect() -> list[Any]:
            return [v async for v in value]

        return run_coro_sync(collect())
    return value


def _lock(opts: caching.ResultOptions, key: str, run: TaskRun) -> Any:
    """The lock SERIALIZABLE takes on a cache key: the policy's lock manager if it has one, else a store lease."""
    manager = opts.lock_manager
    if manager is None:
        return opts.store().lease(key, ttl=opts.lease_seconds)
    return _ManagedLock(manager, key, run.id.hex, opts.lease_seconds)


class _ManagedLock:
    __slots__ = ("manager", "key", "holder", "hold")

    def __init__(self, manager: Any, key: str, holder: str, hold: float):
        self.manager, self.key, self.holder, self.hold = manager, key, holder, hold

    def __enter__(self) -> _ManagedLock:
        self.manager.acquire_lock(self.key, self.holder, acquire_timeout=None, hold_timeout=self.hold)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.manager.is_lock_holder(self.key, self.holder):
            self.manager.release_lock(self.key, self.holder)


def _completed(value: Any, opts: caching.ResultOptions | None, key: str | None,
               ctx: TaskRunContext) -> Generator[Step, Any, State]:
    if opts is None:
        return S.Completed(data=value)
    if opts.persist and _stage_in_transaction(opts, key, value, ctx):
        return S.Completed(data=value)  # kept in memory: the store has it only once the transaction commits
    ref = (yield (IO, partial(caching.persist, opts, key, value, ctx))) if opts.persist else None
    return S.Completed(data=value if opts.in_memory else S.UNSET, result_ref=ref)


def _persist_returned(opts: caching.ResultOptions, key: str | None, value: Any,
                      ctx: TaskRunContext) -> Generator[Step, Any, Any]:
    """Persist the data of a Completed state the function returned; None when staged in a transaction."""
    if _stage_in_transaction(opts, key, value, ctx):
        return None
    return (yield (IO, partial(caching.persist, opts, key, value, ctx)))


def _stage_in_transaction(opts: caching.ResultOptions, key: str | None, value: Any, ctx: TaskRunContext) -> bool:
    """Inside a transaction that writes on commit, stage the write instead of doing it (True if staged)."""
    txn = get_transaction()
    if txn is None or not txn.defers_writes():
        return False
    txn.stage(lambda: caching.persist(opts, key, value, ctx))
    return True


def _finish(task: TaskSpec, run: TaskRun, state: State, ctx: TaskRunContext | None) -> State:
    if run.abandoned:  # its final state was set when it was given up; no late hooks, logs or end time
        return run.state
    run.end_ts = time.time()
    transitions.finish(run, state)
    log = _log or _logger()
    kind = state.type
    if kind is StateType.COMPLETED:
        hooks = task.on_completion
    elif kind is StateType.FAILED or kind is StateType.CRASHED:
        hooks = task.on_failure
        log.error("Task run %r finished in state %r", run.name, state, extra={"run_name": run.name})
    else:
        hooks = ()
    if kind is not StateType.FAILED and kind is not StateType.CRASHED and log.isEnabledFor(10):
        log.debug("Task run %r finished in state %r", run.name, state, extra={"run_name": run.name})
    for hook in hooks:
        run_hook(hook, task.owner, run, state)
    if kind is StateType.COMPLETED and (task.on_commit or task.on_rollback):
        txn = get_transaction()
        if txn is not None:
            txn.add_hooks(task.on_commit, task.on_rollback)
    return state


def run_hook(hook: Any, obj: Any, run: Any, state: State) -> None:
    """Call a state hook; a hook that raises is logged and never changes the run's state."""
    try:
        out = hook(obj, run, state)
        if inspect.isawaitable(out):
            run_coro_sync(out)
    except Exception:
        name = getattr(hook, "__name__", repr(hook))
        engine_logger("hooks").exception("Hook %r of run %r raised; the run's state stays %s.", name, run.name,
                                         state.name, extra={"run_name": run.name})


def run_call(call: TaskCall) -> State:
    """Run a task run to its final state in this thread."""
    task = call.spec
    if task.isasync:
        state: State = run_coro_sync(run_call_async(call))
        return state
    return drive(_steps(call), sync_caller(task.invoke, task.timeout_seconds, call.task_run))


async def run_call_async(call: TaskCall) -> State:
    """Run a task run to its final state on the running event loop (async tasks are awaited, sync ones called)."""
    task = call.spec
    if task.isasync:
        caller = async_caller(task.invoke, task.timeout_seconds, call.task_run)
    else:
        sync = sync_caller(task.invoke, task.timeout_seconds, call.task_run)

        async def caller(params: dict[str, Any]) -> Any:
            return sync(params)

    return await drive_async(_steps(call), caller)
