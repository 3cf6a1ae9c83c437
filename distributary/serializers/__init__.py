"""Serializers by name: a small registry of classes (or dotted paths imported on first use) plus `get_serializer`.

Built in: "cloudpickle" (the default), "pickle", "json", "arrow", "compressed" and "compressed/pickle",
"compressed/cloudpickle", "compressed/json". `import distributary.serializers` imports none of pyarrow, pandas,
zstandard or lz4; they are imported when a serializer that needs them is first used.

    >>> s = get_serializer("json")
    >>> s.loads(s.dumps({"a": (1, 2)}))
    {'a': (1, 2)}
    >>> get_serializer(s.to_spec()) == s
    True
"""
from __future__ import annotations

import importlib
import json as _json
import threading
from collections.abc import Callable, Mapping
from typing import Any

from .._registry import Registry
from ..errors import ConfigurationError
from .base import Serializer

Target = str | Callable[..., Serializer]


ENTRY_POINT_GROUP = "distributary.serializers"  # third-party serializers: name = "package.module:Class"
_REGISTRY: Registry[Callable[..., Serializer]] = Registry(
    "serializer", ENTRY_POINT_GROUP,
    hint="Register your own with distributary.serializers.register_serializer(name, SerializerClass).")
_INSTANCES: dict[Any, Serializer] = {}
_LOCK = threading.Lock()


def register_serializer(name: str, target: Target, install_hint: str | None = None, *, clobber: bool = False
                        ) -> None:
    """Register `target` under `name`. `target` is a `Serializer` subclass, a factory returning a serializer, or a
    dotted path `"package.module:attribute"` imported on first use. `install_hint` names the distributary extra
    that installs the target's dependencies (e.g. "arrow"); it is shown when importing the target fails.

    Registering a different target under a taken name raises `ConfigurationError` unless `clobber=True`;
    registering the same target again does nothing.
    """
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"A serializer name must be a non-empty string, got {name!r}.")
    if isinstance(target, str) and ":" not in target:
        raise ConfigurationError(f"Serializer target {target!r} must look like 'package.module:attribute'.")
    try:
        _REGISTRY.register(name, target, install_hint, replace=clobber)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{exc} Or pass clobber=True to replace it.") from None
    with _LOCK:
        _INSTANCES.clear()


def registered_serializers() -> list[str]:
    """The registered serializer names, sorted."""
    return _REGISTRY.names()


def get_serializer(spec: str | Mapping[str, Any] | Serializer) -> Serializer:
    """A serializer from its registered name, a spec dict from `Serializer.to_spec()`, or a serializer (returned
    as is). Unknown names raise `UnknownNameError`; a serializer whose optional dependency is missing raises
    `MissingDependencyError` naming the extra to install."""
    if isinstance(spec, Serializer):
        return spec
    if isinstance(spec, str):
        name, options = spec, {}
    elif isinstance(spec, Mapping):
        if "type" not in spec:
            raise ConfigurationError(f"A serializer spec needs a 'type' key, got {dict(spec)!r}.")
        options = dict(spec)
        name = options.pop("type")
    else:
        raise ConfigurationError(
            f"Expected a serializer name, spec dict or Serializer, got {type(spec).__name__}: {spec!r}.")
    cache_key = _instance_key(name, options)
    found = _INSTANCES.get(cache_key)
    if found is not None:
        return found
    factory = _load_target(name)
    try:
        serializer = factory(**options)
    except TypeError as exc:
        raise ConfigurationError(f"Cannot build the {name!r} serializer from options {options!r}: {exc}") from exc
    if not isinstance(serializer, Serializer):
        raise ConfigurationError(f"The target registered as {name!r} returned {serializer!r}, not a Serializer.")
    _INSTANCES[cache_key] = serializer
    return serializer


def _instance_key(name: str, options: dict[str, Any]) -> Any:
    """The cache key of a built serializer: a tuple when the options are hashable (a cache hit reads one spec
    per result, so this is on the hot path), else their JSON text."""
    try:
        key = (name, tuple(sorted(options.items())))
        hash(key)
        return key
    except TypeError:
        return _json.dumps([name, options], sort_keys=True, default=repr)


def _load_target(name: str) -> Callable[..., Serializer]:
    return _REGISTRY.get(name)


_BUILTINS: dict[str, tuple[str, str | None]] = {
    "pickle": ("distributary.serializers.pickle:PickleSerializer", None),
    "cloudpickle": ("distributary.serializers.pickle:PickleSerializer", None),
    "json": ("distributary.serializers.json:JSONSerializer", None),
    "arrow": ("distributary.serializers.arrow:ArrowSerializer", "arrow"),
    "compressed": ("distributary.serializers.compressed:CompressedSerializer", None),
    "compressed/pickle": ("distributary.serializers.compressed:compressed_pickle", None),
    "compressed/cloudpickle": ("distributary.serializers.compressed:compressed_pickle", None),
    "compressed/json": ("distributary.serializers.compressed:compressed_json", None),
}
for _name, (_target, _hint) in _BUILTINS.items():
    register_serializer(_name, _target, _hint)

DEFAULT_SERIALIZER = "cloudpickle"


def __getattr__(name: str) -> Any:
    # The concrete classes, imported on first access so that importing this package stays light.
    homes = {"PickleSerializer": "pickle", "JSONSerializer": "json", "ArrowSerializer": "arrow",
             "CompressedSerializer": "compressed"}
    if name in homes:
        return getattr(importlib.import_module(f"{__name__}.{homes[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Serializer", "register_serializer", "registered_serializers", "get_serializer", "DEFAULT_SERIALIZER",
           "PickleSerializer", "JSONSerializer", "ArrowSerializer", "CompressedSerializer"]
