"""Pickle serializers: cloudpickle (the default, handles lambdas and locally defined classes) or stdlib pickle.

Only load pickles you wrote yourself: unpickling runs code chosen by whoever wrote the bytes.
"""
from __future__ import annotations

import importlib
import pickle
from types import ModuleType
from typing import Any, BinaryIO, ClassVar

from ..errors import ConfigurationError
from .base import Serializer


class PickleSerializer(Serializer):
    """Pickles with `picklelib` ("cloudpickle" by default, or "pickle" or any module with `dumps`/`loads`),
    protocol 5 so that large buffers (numpy arrays, bytes) are written without extra copies."""

    type: ClassVar[str] = "pickle"

    def __init__(self, picklelib: str = "cloudpickle", protocol: int | None = None) -> None:
        self.picklelib = picklelib
        self.protocol = protocol if protocol is not None else min(5, pickle.HIGHEST_PROTOCOL)
        self._lib = _import_picklelib(picklelib)

    def dumps(self, obj: Any) -> bytes:
        try:
            return self._lib.dumps(obj, protocol=self.protocol)
        except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as exc:
            raise self.cannot_serialize(obj, exc, self._hint()) from exc

    def dump(self, obj: Any, file: BinaryIO) -> None:
        dump = getattr(self._lib, "dump", None)
        if dump is None:
            file.write(self.dumps(obj))
            return
        try:
            dump(obj, file, protocol=self.protocol)
        except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as exc:
            raise self.cannot_serialize(obj, exc, self._hint()) from exc

    def loads(self, data: bytes | bytearray | memoryview) -> Any:
        return self._lib.loads(data)

    def to_spec(self) -> dict[str, Any]:
        return {"type": self.type, "picklelib": self.picklelib, "protocol": self.protocol}

    def _hint(self) -> str:
        if self.picklelib != "cloudpickle":
            return 'Use result_serializer="cloudpickle", which also handles lambdas and locally defined classes.'
        # What cloudpickle cannot handle (a lock, an open file, a socket, a client) has to be left out of the
        # result or turned into data first.
        return ("Return plain data instead of live resources (locks, open files, clients), or use a serializer "
                'made for the data, e.g. result_serializer="arrow" for tables.')


def _import_picklelib(name: str) -> ModuleType:
    try:
        lib = importlib.import_module(name)
    except ImportError as exc:
        raise ConfigurationError(
            f"picklelib {name!r} cannot be imported ({exc}); install it or use 'cloudpickle' or 'pickle'.") from exc
    if not (callable(getattr(lib, "dumps", None)) and callable(getattr(lib, "loads", None))):
        raise ConfigurationError(f"picklelib {name!r} has no dumps()/loads(); use 'cloudpickle' or 'pickle'.")
    return lib
