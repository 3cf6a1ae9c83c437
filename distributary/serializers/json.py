"""JSON serializer with a tagged encoding, so that values JSON has no type for come back equal.

Plain JSON types (None, bool, int, float, str, lists, dicts with str keys) are written as themselves. Other
supported values become `{"$type": <tag>, ...}` objects: tuple, namedtuple, set, frozenset, dict with non-str
keys, bytes, bytearray, datetime, date, time, timedelta, UUID, Decimal, complex, Path, Enum, dataclasses and
pydantic models. Classes (Enum, dataclass, pydantic, namedtuple) are recorded by import path and imported when
loading, so they must be importable (not defined inside a function) in the loading process.
"""
from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import enum
import importlib
import json
import pathlib
import sys
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

from ..errors import SerializationError
from .base import Serializer

TAG = "$type"


class _Unsupported(Exception):
    def __init__(self, obj: Any, reason: str = "") -> None:
        super().__init__(reason)
        self.obj = obj


class JSONSerializer(Serializer):
    """UTF-8 JSON (human readable, portable across languages for plain data). `loads(dumps(x)) == x` for the
    types listed in the module docstring."""

    type: ClassVar[str] = "json"

    def dumps(self, obj: Any) -> bytes:
        try:
            encoded = _encode(obj)
        except _Unsupported as exc:
            reason = f" ({exc})" if str(exc) else ""
            raise SerializationError(
                f"The 'json' serializer cannot serialize a value of type {_name(type(exc.obj))}{reason}"
                + (f" inside a {_name(type(obj))}" if exc.obj is not obj else "")
                + '. Use result_serializer="cloudpickle" (any picklable value) for it.') from None
        except RecursionError as exc:
            raise self.cannot_serialize(obj, exc, "The value is nested too deeply or contains itself; "
                                        'use result_serializer="cloudpickle".') from exc
        return json.dumps(encoded, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def loads(self, data: bytes | bytearray | memoryview) -> Any:
        if isinstance(data, memoryview):
            data = data.tobytes()
        return json.loads(data, object_hook=_decode_object)


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _class_path(obj: Any) -> str:
    cls = type(obj)
    if "<locals>" in cls.__qualname__:
        raise _Unsupported(obj, f"class {cls.__qualname__} is defined inside a function, so it cannot be "
                                "imported when loading; define it at module level")
    return _path(cls)


def _import_class(path: str) -> type:
    module_name, _, qualname = path.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def _encode(obj: Any) -> Any:
    cls = type(obj)
    if obj is None or cls is bool or cls is int or cls is float or cls is str:
        return obj
    if cls is list:
        return [_encode(v) for v in obj]
    if cls is dict:
        if all(type(k) is str for k in obj) and TAG not in obj:
            return {k: _encode(v) for k, v in obj.items()}
        return {TAG: "dict", "items": [[_encode(k), _encode(v)] for k, v in obj.items()]}
    if isinstance(obj, enum.Enum):
        return {TAG: "enum", "cls": _class_path(obj), "value": _encode(obj.value)}
    if cls is tuple:
        return {TAG: "tuple", "items": [_encode(v) for v in obj]}
    if isinstance(obj, tuple) and hasattr(cls, "_fields"):
        return {TAG: "namedtuple", "cls": _class_path(obj), "items": [_encode(v) for v in obj]}
    if cls is set or cls is frozenset:
        items = [_encode(v) for v in obj]
        try:
            items.sort(key=lambda v: json.dumps(v, sort_keys=True))
        except TypeError:
            pass  # unorderable encodings keep iteration order; the decoded set is equal either way
        return {TAG: cls.__name__, "items": items}
    if cls is bytes:
        return {TAG: "bytes", "b64": base64.b64encode(obj).decode("ascii")}
    if cls is bytearray:
        return {TAG: "bytearray", "b64": base64.b64encode(obj).decode("ascii")}
    if cls is dt.datetime:
        return {TAG: "datetime", "iso": obj.isoformat()}
    if cls is dt.date:
        return {TAG: "date", "iso": obj.isoformat()}
    if cls is dt.time:
        return {TAG: "time", "iso": obj.isoformat()}
    if cls is dt.timedelta:
        return {TAG: "timedelta", "days": obj.days, "seconds": obj.seconds, "microseconds": obj.microseconds}
    if cls is uuid.UUID:
        return {TAG: "uuid", "hex": obj.hex}
    if cls is decimal.Decimal:
        return {TAG: "decimal", "str": str(obj)}
    if cls is complex:
        return {TAG: "complex", "real": obj.real, "imag": obj.imag}
    if isinstance(obj, pathlib.PurePath):
        return {TAG: "path", "cls": cls.__name__, "str": str(obj)}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {f.name: _encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        return {TAG: "dataclass", "cls": _class_path(obj), "fields": fields}
    if _is_pydantic_model(obj):
        return {TAG: "pydantic", "cls": _class_path(obj), "json": obj.model_dump_json()}
    for plain in (int, float, str):  # subclasses of plain types (enums were handled above): keep the plain value
        if isinstance(obj, plain):
            return plain(obj)
    raise _Unsupported(obj)


def _is_pydantic_model(obj: Any) -> bool:
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(obj, pydantic.BaseModel)


def _new_dataclass(cls: type, fields: dict[str, Any]) -> Any:
    init = {f.name for f in dataclasses.fields(cls) if f.init}
    obj = cls(**{k: v for k, v in fields.items() if k in init})
    for name, value in fields.items():
        if name not in init:
            object.__setattr__(obj, name, value)  # works for frozen dataclasses too
    return obj


_DECODERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "dict": lambda o: {_hashable(k): v for k, v in o["items"]},
    "tuple": lambda o: tuple(o["items"]),
    "namedtuple": lambda o: _import_class(o["cls"])(*o["items"]),
    "set": lambda o: {_hashable(v) for v in o["items"]},
    "frozenset": lambda o: frozenset(_hashable(v) for v in o["items"]),
    "bytes": lambda o: base64.b64decode(o["b64"]),
    "bytearray": lambda o: bytearray(base64.b64decode(o["b64"])),
    "datetime": lambda o: dt.datetime.fromisoformat(o["iso"]),
    "date": lambda o: dt.date.fromisoformat(o["iso"]),
    "time": lambda o: dt.time.fromisoformat(o["iso"]),
    "timedelta": lambda o: dt.timedelta(days=o["days"], seconds=o["seconds"], microseconds=o["microseconds"]),
    "uuid": lambda o: uuid.UUID(hex=o["hex"]),
    "decimal": lambda o: decimal.Decimal(o["str"]),
    "complex": lambda o: complex(o["real"], o["imag"]),
    "path": lambda o: getattr(pathlib, o["cls"], pathlib.PurePath)(o["str"]),
    "enum": lambda o: _import_class(o["cls"])(o["value"]),
    "dataclass": lambda o: _new_dataclass(_import_class(o["cls"]), o["fields"]),
    "pydantic": lambda o: _import_class(o["cls"]).model_validate_json(o["json"]),  # type: ignore[attr-defined]
}


def _hashable(value: Any) -> Any:
    # Lists are what JSON gives back for sequences; a set element or dict key that was a list can only have been
    # encoded from a hashable tuple subclass, which is tagged, so a bare list here means corrupt input.
    if isinstance(value, list):
        raise ValueError("a set element or dict key decoded to a list; the JSON payload is corrupt")
    return value


def _decode_object(obj: dict[str, Any]) -> Any:
    tag = obj.get(TAG)
    if tag is None:
        return obj
    decoder = _DECODERS.get(tag)
    if decoder is None:
        raise ValueError(f"unknown JSON type tag {tag!r}: written by a newer distributary?")
    return decoder(obj)
