"""Futures, states and result references nested in task arguments: finding them and replacing them by values.

This runs for every task run, so the common case (plain ints, strings, ...) returns after one type check.
"""
from __future__ import annotations

import collections
import dataclasses
import sys
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ..errors import UpstreamTaskError
from ..states import State
from .futures import FutureList, TaskRunFuture

T = TypeVar("T")

_ATOMIC = frozenset({int, float, str, bool, type(None), bytes, complex, range})


class BaseAnnotation(Generic[T]):
    __slots__ = ("value",)

    def __init__(self, value: T):
        self.value = value

    def unwrap(self) -> T:
        return self.value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value!r})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.value == other.value

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.value,))


class unmapped(BaseAnnotation[T]):
    """Pass this argument whole to every mapped task run instead of mapping over it."""

    def __getitem__(self, _: Any) -> T:
        return self.value


class quote(BaseAnnotation[T]):
    """Pass this argument as it is: futures and states inside it are not resolved (and not traversed)."""


class opaque(BaseAnnotation[T]):
    """Pass this argument with a future or state at its top resolved to its value, but never walk into the
    value (for large results: nothing inside it is searched for futures)."""


class allow_failure(BaseAnnotation[T]):
    """Run the downstream task even if this upstream failed; it then receives the upstream's exception."""


def _is_result_ref(v: Any) -> bool:
    # No ResultRef can exist (made or unpickled) unless its module was imported, so never import it here.
    mod = sys.modules.get("distributary.results.refs")
    return mod is not None and isinstance(v, mod.ResultRef)


def map_nested(obj: Any, fn: Callable[[Any], Any], _quote_stop: bool = True) -> Any:
    """Apply `fn` to every leaf of lists, tuples, dicts, sets and dataclasses in `obj`, rebuilding only
    containers whose contents changed. `quote(...)` stops the walk."""
    t = type(obj)
    if t in _ATOMIC:
        return obj
    if t is list or t is tuple or t is set or t is frozenset:
        items = [map_nested(v, fn, _quote_stop) for v in obj]
        if all(a is b for a, b in zip(items, obj)):
            return obj
        return t(items)
    if t is dict:
        new = {k: map_nested(v, fn, _quote_stop) for k, v in obj.items()}
        if all(new[k] is v for k, v in obj.items()):
            return obj
        return new
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        items = [map_nested(v, fn, _quote_stop) for v in obj]
        return obj if all(a is b for a, b in zip(items, obj)) else t(*items)
    if isinstance(obj, (list, tuple, set, frozenset)):  # subclasses: the FutureList of .map(), user types
        items = [map_nested(v, fn, _quote_stop) for v in obj]
        if all(a is b for a, b in zip(items, obj)):
            return obj
        return _rebuild(obj, items)
    if isinstance(obj, dict):  # OrderedDict, defaultdict, user subclasses
        new = {k: map_nested(v, fn, _quote_stop) for k, v in obj.items()}
        if all(new[k] is v for k, v in obj.items()):
            return obj
        return _rebuild(obj, new)
    if isinstance(obj, BaseAnnotation):
        if not _quote_stop:
            return fn(obj)
        if isinstance(obj, quote):
            return obj
        inner = fn(obj.value) if isinstance(obj, opaque) else map_nested(obj.value, fn)
        return obj if inner is obj.value else t(inner)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type) and not _is_result_ref(obj):
        changes = {}
        for f in dataclasses.fields(obj):
            if not f.init:
                continue
            v = getattr(obj, f.name)
            nv = map_nested(v, fn, _quote_stop)
            if nv is not v:
                changes[f.name] = nv
        return dataclasses.replace(obj, **changes) if changes else obj
    return fn(obj)


def _rebuild(obj: Any, contents: Any) -> Any:
    """A container of obj's type holding `contents` (a list, or a dict for mappings). The future list of a
    `.map()` becomes a plain list of values; a type that cannot be rebuilt from its contents becomes the
    builtin it derives from."""
    t = type(obj)
    if isinstance(obj, FutureList):
        return list(contents)
    try:
        if isinstance(obj, collections.defaultdict):
            return t(obj.default_factory, contents)
        return t(contents)
    except Exception:
        for base in (list, tuple, frozenset, set, dict):
            if isinstance(obj, base):
                return base(contents)
        raise


def collect_futures(obj: Any, out: list[TaskRunFuture[Any]]) -> list[TaskRunFuture[Any]]:
    """Append every future nested in `obj` (not inside `quote`) to `out`."""
    t = type(obj)
    if t in _ATOMIC:
        return out
    if isinstance(obj, TaskRunFuture):
        out.append(obj)
        return out

    def leaf(v: Any) -> Any:
        if isinstance(v, TaskRunFuture):
            out.append(v)
        return v

    map_nested(obj, leaf)
    return out


def find_upstreams(parameters: dict[str, Any], wait_for: Any = None) -> list[TaskRunFuture[Any]]:
    out: list[TaskRunFuture[Any]] = []
    for v in parameters.values():
        if type(v) not in _ATOMIC:
            collect_futures(v, out)
    if wait_for:
        collect_futures(list(wait_for), out)
    return out


def link_result(results: dict[int, tuple[str, Any]], value: Any, task_run_id: str) -> None:
    """Remember that a direct task call returned `value`, so a later call given it records the run as an input.
    Values Python interns (None, booleans, small ints) are shared by unrelated code: never linked (as in Prefect)."""
    if value is None or value.__class__ is bool or (value.__class__ is int and -5 <= value <= 256):
        return
    try:
        ref: Any = weakref.ref(value)
    except TypeError:  # lists, dicts, strings: identity only, while the flow run lasts
        ref = None
    results[id(value)] = (task_run_id, ref)


def task_inputs(parameters: dict[str, Any], wait_for: Any = None,
                results: dict[int, tuple[str, Any]] | None = None) -> dict[str, list[dict[str, str]]] | None:
    """Prefect's `task_inputs` of a call: per parameter, the task runs whose futures it holds or (`results`, from
    `link_result`) whose returned values it is or contains; `wait_for` under its own key. None if there are none."""
    def linked(v: Any, ids: list[str]) -> Any:
        got = results.get(id(v)) if results else None
        if got is not None and (got[1] is None or got[1]() is v):
            ids.append(got[0])
        return v

    def upstream(v: Any) -> list[dict[str, str]]:
        ids: list[str] = []
        linked(v, ids)
        if type(v) not in _ATOMIC:
            ids += [str(f.task_run.id) for f in collect_futures(v, [])]
            if results:
                map_nested(v, lambda leaf: linked(leaf, ids))
        return [{"input_type": "task_run", "id": i} for i in dict.fromkeys(ids)]

    out = {name: ups for name, v in parameters.items() if (ups := upstream(v))}
    if wait_for:
        waited = upstream(list(wait_for) if isinstance(wait_for, (list, tuple, set)) else [wait_for])
        if waited:
            out["wait_for"] = waited
    return out or None


def needs_resolution(parameters: dict[str, Any]) -> bool:
    for v in parameters.values():  # noqa: SIM110  a plain loop: the hot path of every call, faster than any()
        if type(v) not in _ATOMIC:
            return True
    return False


def _resolve_leaf(v: Any, allow: bool) -> Any:
    if isinstance(v, TaskRunFuture):
        v.wait()
        state = v.state
        if state.is_completed():
            return state.result()
        if allow:
            return state.result(raise_on_failure=False)
        raise UpstreamTaskError(f"Upstream task run {v.task_run.name!r} did not reach a 'COMPLETED' state "
                                f"(it is {state.name}).")
    if isinstance(v, State):
        if v.is_completed():
            return v.result()
        if allow:
            return v.result(raise_on_failure=False)
        raise UpstreamTaskError(f"An upstream state passed as an argument is {v.name}, not completed.")
    if _is_result_ref(v):
        return v.load()
    return v


def _resolve_top(v: Any, allow: bool) -> Any:
    if isinstance(v, (TaskRunFuture, State)) or _is_result_ref(v):
        return _resolve_leaf(v, allow)
    return v


def _resolve_one(v: Any, allow: bool) -> Any:
    """One value: an annotation is applied, a future, state or result reference resolved, anything else kept."""
    tv = type(v)
    if tv is quote:
        return v.value
    if tv is allow_failure:
        return resolve_value(v.value, allow=True)
    if tv is unmapped:
        return resolve_value(v.value, allow)
    if tv is opaque:
        return _resolve_top(v.value, allow)
    return _resolve_leaf(v, allow)


_ANNOTATIONS = frozenset({quote, allow_failure, unmapped, opaque})


def resolve_value(obj: Any, allow: bool = False) -> Any:
    """Replace futures, states and result references in `obj` by their values. `quote` is unwrapped, `allow_failure`
    lets failed upstreams through as their exceptions. Raises `UpstreamTaskError` for a failed upstream."""
    t = type(obj)
    if t in _ATOMIC:
        return obj
    if t in _ANNOTATIONS or isinstance(obj, (TaskRunFuture, State)) or _is_result_ref(obj):
        return _resolve_one(obj, allow)
    return map_nested(obj, lambda v: _resolve_one(v, allow), _quote_stop=False)


def resolve_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    """Resolve every parameter value (see `resolve_value`)."""
    if not needs_resolution(parameters):
        return parameters
    return {k: resolve_value(v) for k, v in parameters.items()}


def wait_all(futures: list[TaskRunFuture[Any]]) -> None:
    for f in futures:
        f.wait()


def resolve_futures_to_states(obj: Any) -> Any:
    """Replace every future nested in `obj` with its final state (waiting for it)."""
    return map_nested(obj, lambda f: (f.wait(), f.state)[1] if isinstance(f, TaskRunFuture) else f)


def resolve_futures_to_results(obj: Any) -> Any:
    """Replace every future nested in `obj` with its result (waiting for it)."""
    return map_nested(obj, lambda f: f.result() if isinstance(f, TaskRunFuture) else f)
