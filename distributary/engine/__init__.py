"""Runs one task run: a generator of steps (the decisions) driven by a thin sync or async driver.

The generator yields only what differs between sync and async code, calling the user's function and sleeping
before a retry; everything else (inputs, cache, states, persistence, hooks) is written once. Runners call
`run_call(call)` in a worker thread or process, or `run_call_async(call)` on an event loop.
"""
from __future__ import annotations

import asyncio
import contextvars
import copy
import ctypes
import inspect
import signal
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any

from .. import caching, core
from .. import states as S
from ..context import TaskRunContext, task_run_ctx
from ..errors import (DistributaryError, TaskRunTimeoutError, UpstreamTaskError)
from ..logging import engine_logger, reset_log_prints, set_log_prints
from ..resolve import resolve_parameters
from ..runs import TaskRun
from ..states import State

if TYPE_CHECKING:
    from ..tasks import Task

# The two steps a run's generator yields to its driver.
CALL = 0  # (CALL, params): call the user's function
SLEEP = 1  # (SLEEP, seconds): wait before a retry
_log = None


def _logger():
    global _log
    if _log is None:
        _log = engine_logger("task_runs")
    return _log


class TaskCall:
    """One task run to execute: the task, its record, its (unresolved) arguments and the options it runs with.
    Remote runners pickle it (without `context`) and run it with `run_call` on a worker."""

    __slots__ = ("task", "task_run", "parameters", "wait_for", "result_options", "flow_parameters", "log_prints",
                 "settings_env", "context")

    def __init__(self, task: "Task", task_run: TaskRun, parameters: dict[str, Any], wait_for: Any,
                 result_options: caching.ResultOptions | None, flow_parameters: dict[str, Any],
                 log_prints: bool, settings_env: dict[str, str] | None = None,
                 context: contextvars.Context | None = None):
        self.task = task
        self.task_run = task_run
        self.parameters = parameters
        self.wait_for = wait_for
        self.result_options = result_options
        self.flow_parameters = flow_parameters
        self.log_prints = log_prints
        self.settings_env = settings_env
        self.context = context

    def __getstate__(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__slots__}
        d["context"] = None
        d["wait_for"] = None
        # The driver's record keeps the original arguments (they may hold futures); ship the ones sent.
        run = copy.copy(self.task_run)
        run.parameters = self.parameters
        run.state_history = list(run.state_history)
        d["task_run"] = run
        return d

    def __setstate__(self, d: dict[str, Any]) -> None:
        for k, v in d.items():
            setattr(self, k, v)


# ---------------------------------------------------------------------------------------------------------------
# The steps of a task run
# ---------------------------------------------------------------------------------------------------------------
def _steps(call: TaskCall) -> Generator[tuple, Any, State]:
    task = call.task
    run = call.task_run
    run.start_ts = time.time()
    try:
        params = resolve_parameters(call.parameters)
    except UpstreamTaskError as exc:
        return _finish(task, run, S.NotReady(message=str(exc), data=exc), None)
    except Exception as exc:  # e.g. a result reference that cannot be loaded
        return _finish(task, run, core.failed_state_for(exc, run.name), None)

    opts = call.result_options
    ctx = TaskRunContext(task, run, params, call.flow_parameters, call.log_prints, opts)
    token = task_run_ctx.set(ctx)
    lp_token = set_log_prints(True) if call.log_prints else None
    lease = None
    try:
        key = None
        if opts is not None:
            try:
                key = caching.compute_key(opts, ctx)
                run.cache_key = key
                hit = caching.lookup(opts, key) if key is not None else None
                if hit is None and key is not None and _serializable(opts):
                    lease = opts.store().lease(key, ttl=opts.lease_seconds)
                    lease.__enter__()
                    hit = caching.lookup(opts, key)  # another run may have computed it while we waited
            except Exception as exc:
                return _finish(task, run, core.failed_state_for(exc, run.name), ctx)
            if hit is not None:
                return _finish(task, run, hit, ctx)

        retries = task.retries
        delays = task._retry_delays
        while True:
            run.run_count += 1
            run.set_state(S.Running() if run.run_count == 1 else S.Retrying())
            try:
                value = yield (CALL, params)
                final = core.state_from_return(value)
                if final is None:
                    final = _completed(value, opts, key, ctx)
                elif final.is_completed() and opts is not None and opts.persist and final.data is not S.UNSET:
                    final.result_ref = caching.persist(opts, key, final.data, ctx)
                if not final.is_failed():
                    break
                failed = final
            except (KeyboardInterrupt, SystemExit) as exc:
                _finish(task, run, core.failed_state_for(exc, run.name), ctx)
                raise
            except BaseException as exc:
                failed = core.failed_state_for(exc, run.name)
            cond = task.retry_condition_fn
            if core.should_retry(retries, run.run_count, failed,
                                 (lambda: cond(task, run, failed)) if cond is not None else None):
                delay = core.retry_delay(delays, run.run_count, task.retry_jitter_factor)
                run.set_state(S.AwaitingRetry(message=f"Retry {run.run_count} of {retries} in {delay:.3g}s"))
                if delay > 0:
                    yield (SLEEP, delay)
                continue
            final = failed
            break
        return _finish(task, run, final, ctx)
    finally:
        if lease is not None:
            lease.__exit__(None, None, None)
        if lp_token is not None:
            reset_log_prints(lp_token)
        task_run_ctx.reset(token)


def _serializable(opts: caching.ResultOptions) -> bool:
    iso = opts.isolation
    return iso is not None and str(getattr(iso, "value", iso)).upper() == "SERIALIZABLE"


def _completed(value: Any, opts: caching.ResultOptions | None, key: str | None, ctx: TaskRunContext) -> State:
    if opts is None:
        return S.Completed(data=value)
    ref = caching.persist(opts, key, value, ctx) if opts.persist else None
    return S.Completed(data=value if opts.in_memory else S.UNSET, result_ref=ref)


def _finish(task: "Task", run: TaskRun, state: State, ctx: TaskRunContext | None) -> State:
    run.end_ts = time.time()
    run.set_state(state)
    if state.is_failed() or state.is_crashed():
        _logger().error("Task run %r finished in state %r", run.name, state, extra={"run_name": run.name})
    elif _logger().isEnabledFor(10):
        _logger().debug("Task run %r finished in state %r", run.name, state, extra={"run_name": run.name})
    hooks = task.on_completion if state.is_completed() else task.on_failure if (
        state.is_failed() or state.is_crashed()) else ()
    for hook in hooks:
        run_hook(hook, task, run, state)
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


# ---------------------------------------------------------------------------------------------------------------
# Drivers
# ---------------------------------------------------------------------------------------------------------------
def drive(gen: Generator[tuple, Any, State], call: Callable[[dict[str, Any]], Any]) -> State:
    """Drive a run's steps in this thread: `call(params)` runs the user's function, sleeps block."""
    try:
        step = next(gen)
        while True:
            if step[0] == CALL:
                try:
                    value = call(step[1])
                except BaseException as exc:
                    step = gen.throw(exc)
                    continue
                step = gen.send(value)
            else:
                time.sleep(step[1])
                step = next(gen)
    except StopIteration as stop:
        return stop.value


async def drive_async(gen: Generator[tuple, Any, State],
                      call: Callable[[dict[str, Any]], Awaitable[Any]]) -> State:
    """Drive a run's steps on the running event loop: `await call(params)`, sleeps do not block the loop."""
    try:
        step = next(gen)
        while True:
            if step[0] == CALL:
                try:
                    value = await call(step[1])
                except BaseException as exc:
                    step = gen.throw(exc)
                    continue
                step = gen.send(value)
            else:
                await asyncio.sleep(step[1])
                step = next(gen)
    except StopIteration as stop:
        return stop.value


def sync_caller(fn: Callable[..., Any], timeout: float | None, run: Any,
                error_cls: type[Exception] = TaskRunTimeoutError) -> Callable[[dict[str, Any]], Any]:
    if not timeout:
        return lambda params: fn(**params)
    return lambda params: call_with_timeout(fn, params, timeout, run, error_cls)


def async_caller(fn: Callable[..., Any], timeout: float | None, run: Any,
                 error_cls: type[Exception] = TaskRunTimeoutError) -> Callable[[dict[str, Any]], Awaitable[Any]]:
    async def call(params: dict[str, Any]) -> Any:
        if not timeout:
            return await fn(**params)
        try:
            return await asyncio.wait_for(fn(**params), timeout)
        except asyncio.TimeoutError as exc:
            raise _timeout_error(run, timeout, error_cls) from exc

    return call


def run_call(call: TaskCall) -> State:
    """Run a task run to its final state in this thread."""
    task = call.task
    if task.isasync:
        return run_coro_sync(run_call_async(call))
    return drive(_steps(call), sync_caller(task._invoke, task.timeout_seconds, call.task_run))


async def run_call_async(call: TaskCall) -> State:
    """Run a task run to its final state on the running event loop (async tasks are awaited, sync ones called)."""
    task = call.task
    if task.isasync:
        caller = async_caller(task._invoke, task.timeout_seconds, call.task_run)
    else:
        sync = sync_caller(task._invoke, task.timeout_seconds, call.task_run)

        async def caller(params: dict[str, Any]) -> Any:
            return sync(params)

    return await drive_async(_steps(call), caller)


def _timeout_error(run: Any, timeout: float, cls: type[Exception] = TaskRunTimeoutError) -> Exception:
    return cls(f"Run {run.name!r} exceeded its timeout of {timeout} seconds.")


def call_with_timeout(fn: Any, kwargs: dict[str, Any], timeout: float, run: Any,
                      error_cls: type[Exception] = TaskRunTimeoutError) -> Any:
    """Call `fn(**kwargs)`, raising TaskRunTimeoutError after `timeout` seconds.

    In a process's main thread (process runner workers, flows run from a script) SIGALRM interrupts the call,
    including blocking sleeps and I/O. Elsewhere the call runs in a helper thread: at the deadline the caller
    gets TaskRunTimeoutError at once, and the helper thread receives TimeoutError as soon as it next executes
    Python bytecode; a thread blocked inside a C call (a long sleep, a socket read) runs on until that call
    returns, and its result is discarded.
    """
    if (threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
            and signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, signal.SIG_IGN, None)
            and signal.getitimer(signal.ITIMER_REAL)[0] == 0):
        def on_alarm(signum: int, frame: Any) -> None:
            raise _timeout_error(run, timeout, error_cls)

        old = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            return fn(**kwargs)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)

    box: list[tuple[bool, Any]] = []
    done = threading.Event()
    ctx = contextvars.copy_context()

    def target() -> None:
        try:
            box.append((True, ctx.run(fn, **kwargs)))
        except BaseException as exc:  # handed to the waiting thread
            box.append((False, exc))
        finally:
            done.set()

    worker = threading.Thread(target=target, name=f"timeout-guard-{run.name}", daemon=True)
    worker.start()
    if not done.wait(timeout):
        if worker.ident is not None:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(worker.ident), ctypes.py_object(TimeoutError))
        raise _timeout_error(run, timeout, error_cls)
    ok, value = box[0]
    if ok:
        return value
    raise value


def run_coro_sync(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, also when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: list[tuple[bool, Any]] = []
    ctx = contextvars.copy_context()

    def target() -> None:
        try:
            box.append((True, ctx.run(asyncio.run, coro)))
        except BaseException as exc:
            box.append((False, exc))

    t = threading.Thread(target=target, name="distributary-coro", daemon=True)
    t.start()
    t.join()
    ok, value = box[0]
    if ok:
        return value
    raise value


def new_task_run(task: "Task", parameters: dict[str, Any], flow_run_id: uuid.UUID | None, dynamic_key: int,
                 tags: frozenset[str]) -> TaskRun:
    name = task.task_run_name
    if name is None:
        name = f"{task.name}-{dynamic_key}"
    elif callable(name):
        name = str(name())
    else:
        try:
            name = str(name).format(**parameters)
        except (KeyError, IndexError, AttributeError) as exc:
            raise DistributaryError(f"task_run_name {name!r} of task {task.name!r} could not be filled in from "
                                    f"its parameters {sorted(parameters)}: {exc!r}") from exc
    return TaskRun(uuid.uuid4(), name, task.name, task.task_key, flow_run_id, parameters, tags, S.Pending(),
                   dynamic_key)


def ensure_error(exc: Any) -> BaseException:
    return exc if isinstance(exc, BaseException) else DistributaryError(str(exc))
