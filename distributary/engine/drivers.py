"""The drivers of a run's steps: the sync driver (this thread; sleeps block) and the async driver (the running
event loop; sleeps do not block it), the callers that apply a timeout, and `run_coro_sync`.

A run is a generator of steps (see `steps.py`); it yields only what differs between sync and async code: `CALL`
(call the user's function), `IO` (blocking store I/O: the async driver runs it in a thread, off the event loop)
and `SLEEP`.
"""
from __future__ import annotations

import asyncio
import contextvars
import ctypes
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from ..errors import TaskRunTimeoutError
from ..states import State

# The two steps a run's generator yields to its driver.
CALL = 0  # (CALL, params): call the user's function
SLEEP = 1  # (SLEEP, seconds): wait before a retry
IO = 2  # (IO, fn): blocking I/O (cache lookup, lock, persisting a result): fn() here, off the event loop if async
Step = tuple[int, Any]


def drive(gen: Generator[Step, Any, State], call: Callable[[dict[str, Any]], Any]) -> State:
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
            elif step[0] == IO:
                try:
                    value = step[1]()
                except BaseException as exc:
                    step = gen.throw(exc)
                    continue
                step = gen.send(value)
            else:
                time.sleep(step[1])
                step = next(gen)
    except StopIteration as stop:
        final: State = stop.value
        return final


async def drive_async(gen: Generator[Step, Any, State],
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
            elif step[0] == IO:
                try:
                    value = await asyncio.to_thread(step[1])
                except BaseException as exc:
                    step = gen.throw(exc)
                    continue
                step = gen.send(value)
            else:
                await asyncio.sleep(step[1])
                step = next(gen)
    except StopIteration as stop:
        final: State = stop.value
        return final


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
