"""Task calls: one task run to execute (its record, arguments and options), built for `.submit()` and for each
run of a `.map()` (map expansion: which arguments are mapped over, which go whole to every run).
"""
from __future__ import annotations

import contextvars
import copy
import itertools
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from .. import states as S
from ..context import current_tags as _current_tags
from ..context import flow_run_ctx
from ..errors import DistributaryError, MappingLengthMismatch, MappingMissingIterable
from ..runs import TaskRun, batch_run_ids
from ..states import State
from . import transitions
from .caching import ResultOptions, resolve_result_options
from .futures import TaskRunFuture
from .resolve import needs_resolution, task_inputs, unmapped
from .spec import HasTaskSpec, TaskSpec


class TaskCall:
    """One task run to execute: the task's spec, its record, its (unresolved) arguments and the options it runs
    with. Remote runners pickle it (without `context`) and run it with `run_call` on a worker."""

    __slots__ = ("spec", "task_run", "parameters", "wait_for", "result_options", "flow_parameters", "log_prints",
                 "settings_env", "context", "returned")

    def __init__(self, spec: TaskSpec, task_run: TaskRun, parameters: dict[str, Any], wait_for: Any,
                 result_options: ResultOptions | None, flow_parameters: dict[str, Any],
                 log_prints: bool, settings_env: dict[str, str] | None = None,
                 context: contextvars.Context | None = None):
        self.spec = spec
        self.task_run = task_run
        self.parameters = parameters
        self.wait_for = wait_for
        self.result_options = result_options
        self.flow_parameters = flow_parameters
        self.log_prints = log_prints
        self.settings_env = settings_env
        self.context = context
        self.returned: Any = S.UNSET  # what the function returned on its last attempt (a call returns it)

    @property
    def task(self) -> Any:
        """The Task this run belongs to (the spec's owner)."""
        return self.spec.owner

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


def new_task_run(task: TaskSpec, parameters: dict[str, Any], flow_run_id: uuid.UUID | None, dynamic_key: int,
                 tags: frozenset[str], run_id: uuid.UUID | int | None = None,
                 pending: State | None = None) -> TaskRun:
    """A task run's record. A `.map()` passes ids from `batch_run_ids` and one Pending state for all its runs
    (made at the same moment); a run without a `task_run_name` keeps the default name, made when read."""
    name = task.task_run_name
    if name is None:
        pass
    elif callable(name):
        name = str(name())
    else:
        try:
            name = str(name).format(**parameters)
        except (KeyError, IndexError, AttributeError) as exc:
            raise DistributaryError(f"task_run_name {name!r} of task {task.name!r} could not be filled in from "
                                    f"its parameters {sorted(parameters)}: {exc!r}") from exc
    return TaskRun(uuid.uuid4() if run_id is None else run_id, name, task.name, task.task_key, flow_run_id,
                   parameters, tags, S.Pending() if pending is None else pending, dynamic_key)


_global_keys = itertools.count()


def make_call(task: HasTaskSpec, parameters: dict[str, Any], wait_for: Any) -> TaskCall:
    return make_calls(task, [parameters], wait_for)[0]


def make_calls(task_: HasTaskSpec, param_list: Sequence[dict[str, Any]], wait_for: Any) -> list[TaskCall]:
    """Task-run records and calls for the task with each parameters dict, in the current flow run (if any)."""
    task = task_.spec
    ctx = flow_run_ctx.get()
    n = len(param_list)
    if ctx is not None:
        keys: Iterable[int] = ctx.next_dynamic_keys(task.task_key, n)
        flow_run_id = ctx.flow_run_id
        flow_params = ctx.parameters
        log_prints = ctx.log_prints if task.log_prints is None else task.log_prints
        settings_env = ctx.settings_env
    else:
        first = next(_global_keys)
        keys = range(first, first + n) if n == 1 else _take(n)
        flow_run_id, flow_params, settings_env = None, {}, None
        log_prints = bool(task.log_prints)
    opts = resolve_result_options(task, ctx)
    tags = task.tags | _current_tags.get()
    context = contextvars.copy_context()
    pending = S.Pending()
    calls = [TaskCall(task, new_task_run(task, params, flow_run_id, key, tags, run_id, pending), params, wait_for,
                      opts, flow_params, log_prints, settings_env, context)
             for params, key, run_id in zip(param_list, keys, batch_run_ids(n))]
    results = ctx.result_runs if ctx is not None else None
    for c in calls:  # the upstream task runs each call was given (the run graph); plain values cost one check
        if c.wait_for or results or needs_resolution(c.parameters):
            c.task_run.task_inputs = task_inputs(c.parameters, c.wait_for, results)
    runs = [c.task_run for c in calls]
    if ctx is not None and ctx.flow_run is not None:
        ctx.flow_run.add_task_runs(runs)
    transitions.ensure_recorder_sink()
    transitions.task_runs_created(runs)
    return calls


def _take(n: int) -> range:
    global _global_keys
    first = next(_global_keys)
    _global_keys = itertools.count(first + n)
    return range(first, first + n)


def _iterable(v: Any) -> bool:
    if isinstance(v, (str, bytes, bytearray, dict)):
        return False
    try:
        iter(v)
    except TypeError:
        return False
    return True


def map_columns(task: HasTaskSpec, parameters: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[Any]], int]:
    """A `.map()`'s arguments as (the ones every run gets whole, the mapped ones as equal-length lists, their
    length). Iterable arguments are mapped over; everything else, and anything wrapped in `unmapped(...)`, goes
    whole to every run. A single future is waited for and its result mapped over."""
    static: dict[str, Any] = {}
    mapped: dict[str, list[Any]] = {}
    for k, v in parameters.items():
        if isinstance(v, unmapped):
            static[k] = v.value
            continue
        if isinstance(v, TaskRunFuture):
            v = v.result()
        if _iterable(v):
            mapped[k] = v if isinstance(v, list) else list(v)
        else:
            static[k] = v
    if not mapped:
        got = ", ".join(f"{k}={type(v).__name__}" for k, v in parameters.items()) or "no arguments"
        raise MappingMissingIterable(f"Task {task.spec.name!r}: .map() needs at least one iterable argument to map "
                                     f"over; got {got}. Strings and dicts are not mapped over.")
    lengths = {k: len(v) for k, v in mapped.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{k} has {n}" for k, n in lengths.items())
        raise MappingLengthMismatch(f"Task {task.spec.name!r}: .map() got iterables of different lengths ({detail}). "
                                    f"Give them equal lengths, or wrap the ones to pass whole in unmapped(...).")
    return static, mapped, next(iter(lengths.values()))


def rows(static: dict[str, Any], mapped: dict[str, list[Any]], lo: int = 0, hi: int | None = None
         ) -> list[dict[str, Any]]:
    """The parameters dicts of mapped runs `lo` to `hi` (all by default), from `map_columns`' output."""
    names = list(mapped)
    if len(names) == 1:
        (name,) = names
        values = mapped[name][lo:hi]
        if static:
            return [{**static, name: v} for v in values]
        return [{name: v} for v in values]
    cols = [mapped[k][lo:hi] for k in names]
    return [{**static, **dict(zip(names, row))} for row in zip(*cols)]


def expand_map_parameters(task: HasTaskSpec, parameters: dict[str, Any]) -> list[dict[str, Any]]:
    """One parameters dict per mapped run (see `map_columns`)."""
    static, mapped, _ = map_columns(task, parameters)
    return rows(static, mapped)
