"""The engine: runs task runs and flow runs. Imports point down only (nothing from runners or the public API).

  calls.py        TaskCall (one task run to execute), new_task_run, make_calls / map expansion
  core.py         the decisions, pure Python, no I/O (retry or fail? the delay? final state of a flow?)
  steps.py        the task run as a generator of steps; attempts (the one retry loop, flow runs too);
                  run_call / run_call_async
  drivers.py      the sync and async drivers of a generator of steps, timeouts, run_coro_sync
  transitions.py  the one place a run's state changes; run events to the sinks
  caching.py      result options, cache keys, cache lookups, persisting results
  resolve.py      futures / states / refs nested in arguments, and unmapped / quote / allow_failure

Runners call `run_call(call)` in a worker thread or process, or `run_call_async(call)` on an event loop.
"""
from __future__ import annotations

from .calls import TaskCall, expand_map_parameters, make_call, make_calls, new_task_run
from .drivers import CALL, SLEEP, async_caller, call_with_timeout, drive, drive_async, run_coro_sync, sync_caller
from .steps import attempts, run_call, run_call_async, run_hook

__all__ = ["TaskCall", "new_task_run", "make_call", "make_calls", "expand_map_parameters", "CALL", "SLEEP",
           "drive", "drive_async", "sync_caller", "async_caller", "call_with_timeout", "run_coro_sync",
           "run_call", "run_call_async", "run_hook", "attempts"]
