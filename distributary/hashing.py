"""Stable hashing for cache keys: the same inputs give the same hex digest in any process, on any machine and
Python version (never the salted builtin `hash()`).

Values are fed to SHA-256 in a canonical, type-tagged encoding: dicts by sorted key digests, sets by sorted
element digests, floats by their IEEE bytes, datetimes by ISO text, numpy arrays by dtype + shape + bytes, pandas
objects by `pandas.util.hash_pandas_object`, dataclasses and pydantic models by class path + fields. Anything else
is hashed by its cloudpickle bytes; a value that cannot be pickled raises `CacheKeyError`.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import hashlib
import inspect
import math
import pathlib
import pickle
import struct
import sys
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from .errors import CacheKeyError

_MAX_DEPTH = 200


def stable_hash(*objects: Any) -> str:
    """A hex SHA-256 digest of `objects` that is the same across processes, machines and Python versions.

    >>> stable_hash({"b": 1, "a": [1.5, None]}) == stable_hash({"a": [1.5, None], "b": 1})
    True

    Raises `CacheKeyError` for a value that cannot be hashed (e.g. a lock or an open file).
    """
    h = hashlib.sha256()
    _feed_all(h, objects)
    return h.hexdigest()


def hash_prefix(count: int, *objects: Any) -> Any:
    """The state of `stable_hash` over `count` objects once it has taken the first ones, `objects`:
    `finish_hash(hash_prefix(3, a, b), c) == stable_hash(a, b, c)`. A cache policy's keys for one task all start
    with the same objects; hashing them once per task instead of once per run is most of the key's cost."""
    h = hashlib.sha256()
    h.update(b"*" + _len(count))
    for obj in objects:
        _feed(h, obj, ())
    return h


def finish_hash(prefix: Any, *objects: Any) -> str:
    """The hex digest of a `hash_prefix` state with the remaining `objects` (the prefix itself is not changed)."""
    h = prefix.copy()
    for obj in objects:
        _feed(h, obj, ())
    return h.hexdigest()


def hash_parameters(parameters: Mapping[str, Any], exclude: frozenset[str] | set[str] | list[str] | tuple[str, ...] = ()) -> str:
    """A stable hex digest of a task's arguments (name -> value), leaving out the names in `exclude`.

    When a value cannot be hashed, the `CacheKeyError` names the argument and says how to leave it out.
    """
    h = hashlib.sha256()
    names = sorted(name for name in parameters if name not in exclude) if exclude else sorted(parameters)
    h.update(b"A" + _len(len(names)))
    for name in names:
        value = parameters[name]
        _feed(h, name, ())
        try:
            _feed(h, value, ())
        except CacheKeyError as exc:
            raise CacheKeyError(
                f"Cannot compute a cache key: the argument {name!r} (a {_type_name(value)}) cannot be hashed: "
                f"{exc}. Leave it out of the key with cache_policy=INPUTS - {name!r} (or DEFAULT - {name!r}), "
                "or pass a cache_key_fn that computes the key yourself.") from exc
    return h.hexdigest()


def source_of(fn: Callable[..., Any]) -> str | bytes:
    """The source text of `fn`, or when it has none (a lambda in a REPL, a compiled function) the bytes of its
    code object: enough to tell two versions of a task apart."""
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        code = getattr(getattr(fn, "__wrapped__", fn), "__code__", None)
        if code is None:
            return pickle.dumps(getattr(fn, "__qualname__", repr(type(fn))))
        return code.co_code + repr(code.co_consts).encode() + repr(code.co_names).encode()


def task_input_hash(context: Any, arguments: Mapping[str, Any]) -> str:
    """Prefect's `task_input_hash` cache_key_fn: a hash of the task's key, its code and its arguments.

    `context` needs `.task.task_key` and `.task.fn`. Raises `CacheKeyError` naming an argument that cannot be
    hashed (Prefect returns None there, which silently disables caching).
    """
    return stable_hash(context.task.task_key, source_of(context.task.fn), hash_parameters(arguments))


# -- encoding ----------------------------------------------------------------------------------------------------
_len = struct.Struct(">Q").pack  # a length prefix: 8 bytes, big-endian


def _type_name(obj: Any) -> str:
    cls = type(obj)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _class_path(obj: Any) -> bytes:
    cls = type(obj)
    return f"{cls.__module__}:{cls.__qualname__}".encode()


def _digest(obj: Any, stack: tuple[int, ...]) -> bytes:
    h = hashlib.sha256()
    _feed(h, obj, stack)
    return h.digest()


def _feed_all(h: Any, objects: tuple[Any, ...]) -> None:
    h.update(b"*" + _len(len(objects)))
    for obj in objects:
        _feed(h, obj, ())


def _atom(h: Any, tag: bytes, payload: bytes) -> None:
    h.update(tag + _len(len(payload)))
    h.update(payload)


def _feed(h: Any, obj: Any, stack: tuple[int, ...]) -> None:
    # Exact str and int first (most task arguments): the same bytes as the general branches below, in one update.
    kind = type(obj)
    if kind is str:
        data = obj.encode("utf-8", "surrogatepass")
        h.update(b"s" + _len(len(data)) + data)
        return
    if kind is int:
        data = str(obj).encode()
        h.update(b"i" + _len(len(data)) + data)
        return
    if obj is None:
        h.update(b"N")
        return
    if obj is True or obj is False:
        h.update(b"T" if obj else b"F")
        return
    if isinstance(obj, enum.Enum):
        _atom(h, b"E", _class_path(obj))
        _feed(h, obj.value, stack)
        return
    if isinstance(obj, int):
        _atom(h, b"i", str(int(obj)).encode())
        return
    if isinstance(obj, float):
        x = float(obj)
        _atom(h, b"f", b"nan" if math.isnan(x) else struct.pack(">d", x + 0.0))  # +0.0 folds -0.0 into 0.0
        return
    if isinstance(obj, str):
        _atom(h, b"s", obj.encode("utf-8", "surrogatepass"))
        return
    if isinstance(obj, (bytes, bytearray, memoryview)):
        data = obj if not isinstance(obj, memoryview) or obj.contiguous else obj.tobytes()
        h.update(b"b" + _len(memoryview(data).nbytes))
        h.update(data)
        return
    if isinstance(obj, complex):
        _atom(h, b"j", struct.pack(">dd", obj.real + 0.0, obj.imag + 0.0))
        return
    if isinstance(obj, (dt.datetime, dt.date, dt.time)):
        _atom(h, {dt.datetime: b"D", dt.date: b"a", dt.time: b"m"}.get(type(obj), b"D"), obj.isoformat().encode())
        return
    if isinstance(obj, dt.timedelta):
        _atom(h, b"e", struct.pack(">qqq", obj.days, obj.seconds, obj.microseconds))
        return
    if isinstance(obj, uuid.UUID):
        _atom(h, b"u", obj.bytes)
        return
    if isinstance(obj, decimal.Decimal):
        try:
            text = str(obj.normalize())  # 1.0 and 1.00 are equal, so they hash the same
        except decimal.InvalidOperation:
            text = str(obj)
        _atom(h, b"c", text.encode())
        return
    if isinstance(obj, pathlib.PurePath):
        _atom(h, b"p", obj.as_posix().encode())
        return
    if isinstance(obj, (list, tuple, dict, set, frozenset)) or dataclasses.is_dataclass(obj):
        if id(obj) in stack:
            raise CacheKeyError(f"a {_type_name(obj)} that contains itself cannot be hashed")
        if len(stack) >= _MAX_DEPTH:
            raise CacheKeyError(f"values nested more than {_MAX_DEPTH} levels deep cannot be hashed")
        _feed_container(h, obj, stack + (id(obj),))
        return
    if _feed_library_value(h, obj, stack):
        return
    _feed_pickled(h, obj)


def _feed_container(h: Any, obj: Any, stack: tuple[int, ...]) -> None:
    if isinstance(obj, dict):
        pairs = sorted(((_digest(k, stack), v) for k, v in obj.items()), key=lambda pair: pair[0])
        h.update(b"d" + _len(len(pairs)))
        for key_digest, value in pairs:
            h.update(key_digest)
            _feed(h, value, stack)
    elif isinstance(obj, (list, tuple)):
        h.update((b"l" if isinstance(obj, list) else b"t") + _len(len(obj)))
        for item in obj:
            _feed(h, item, stack)
    elif isinstance(obj, (set, frozenset)):
        h.update(b"S" + _len(len(obj)))
        for item_digest in sorted(_digest(item, stack) for item in obj):
            h.update(item_digest)
    elif isinstance(obj, type):  # a dataclass *class*, not an instance
        _feed_pickled(h, obj)
    else:
        fields = dataclasses.fields(obj)
        _atom(h, b"C", _class_path(obj))
        h.update(_len(len(fields)))
        for field in fields:
            _feed(h, field.name, stack)
            _feed(h, getattr(obj, field.name), stack)


def _feed_library_value(h: Any, obj: Any, stack: tuple[int, ...]) -> bool:
    """numpy, pandas and pydantic values, recognised without importing those libraries."""
    np = sys.modules.get("numpy")
    if np is not None:
        if isinstance(obj, np.ndarray) and obj.dtype != object:
            _atom(h, b"n", f"{obj.dtype.str}{obj.shape}".encode())
            data = np.ascontiguousarray(obj)
            h.update(_len(data.nbytes))
            h.update(data.view(np.uint8).reshape(-1) if data.nbytes else b"")
            return True
        if isinstance(obj, np.ndarray):
            _atom(h, b"o", repr(obj.shape).encode())
            _feed(h, obj.tolist(), stack)
            return True
        if isinstance(obj, np.generic):
            _atom(h, b"g", obj.dtype.str.encode() + obj.tobytes())
            return True
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(obj, (pd.DataFrame, pd.Series, pd.Index)):
        try:
            rows = pd.util.hash_pandas_object(obj, index=not isinstance(obj, pd.Index)).to_numpy()
        except TypeError:
            return False  # unhashable objects in an object column: fall back to pickle
        columns = list(obj.columns) if isinstance(obj, pd.DataFrame) else [obj.name]
        dtypes = [str(t) for t in obj.dtypes] if isinstance(obj, pd.DataFrame) else [str(obj.dtype)]
        _atom(h, b"F", type(obj).__name__.encode())
        _feed(h, (columns, dtypes, list(obj.index.names) if not isinstance(obj, pd.Index) else []), stack)
        _atom(h, b"r", rows.tobytes())
        return True
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(obj, pydantic.BaseModel):
        _atom(h, b"P", _class_path(obj))
        _feed(h, obj.model_dump(), stack)
        return True
    return False


def _feed_pickled(h: Any, obj: Any) -> None:
    import cloudpickle

    try:
        data = cloudpickle.dumps(obj, protocol=5)
    except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as exc:
        raise CacheKeyError(
            f"a value of type {_type_name(obj)} has no stable encoding and cannot be pickled ({exc})") from exc
    _atom(h, b"x", data)
