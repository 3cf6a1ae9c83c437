"""Compression around any serializer: zlib (stdlib), zstd (`zstandard`) or lz4 (`lz4.frame`).

The compression library is recorded in `to_spec()`, so a result is decompressed with the library that compressed
it even where the default differs. The default is zstd when `zstandard` is installed, else zlib.
"""
from __future__ import annotations

import importlib.util
import zlib
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from ..errors import ConfigurationError, MissingDependencyError
from .base import Serializer

COMPRESSION_LIBS = ("zlib", "zstd", "lz4")
_EXTRA = "all"  # the distributary extra that installs zstandard and lz4


def default_compressionlib() -> str:
    """"zstd" when the zstandard package is installed, else "zlib"."""
    return "zstd" if importlib.util.find_spec("zstandard") is not None else "zlib"


class CompressedSerializer(Serializer):
    """Compresses what `serializer` (a name, spec or instance) produces with `compressionlib`.

    >>> s = CompressedSerializer("json", compressionlib="zlib")
    >>> s.loads(s.dumps([1, 2, 3]))
    [1, 2, 3]
    """

    type: ClassVar[str] = "compressed"

    def __init__(self, serializer: str | Mapping[str, Any] | Serializer = "cloudpickle",
                 compressionlib: str | None = None, level: int | None = None) -> None:
        from . import get_serializer

        self.serializer = get_serializer(serializer)
        self.compressionlib = compressionlib or default_compressionlib()
        self.level = level
        self._compress, self._decompress = _codec(self.compressionlib, level)

    def dumps(self, obj: Any) -> bytes:
        return self._compress(self.serializer.dumps(obj))

    def loads(self, data: bytes | bytearray | memoryview) -> Any:
        return self.serializer.loads(self._decompress(data))

    def to_spec(self) -> dict[str, Any]:
        return {"type": self.type, "serializer": self.serializer.to_spec(), "compressionlib": self.compressionlib,
                "level": self.level}


def compressed_pickle(compressionlib: str | None = None, level: int | None = None) -> CompressedSerializer:
    """cloudpickle, compressed (registered as "compressed/pickle" and "compressed/cloudpickle")."""
    return CompressedSerializer("cloudpickle", compressionlib, level)


def compressed_json(compressionlib: str | None = None, level: int | None = None) -> CompressedSerializer:
    """JSON, compressed (registered as "compressed/json")."""
    return CompressedSerializer("json", compressionlib, level)


Codec = tuple[Callable[[Any], bytes], Callable[[Any], bytes]]


def _codec(lib: str, level: int | None) -> Codec:
    if lib == "zlib":
        zlevel = zlib.Z_DEFAULT_COMPRESSION if level is None else level
        return (lambda data: zlib.compress(data, zlevel)), zlib.decompress
    if lib == "zstd":
        try:
            import zstandard
        except ImportError as exc:
            raise MissingDependencyError("zstd compression (the zstandard package)", _EXTRA, exc) from exc
        zstd_level = 3 if level is None else level
        # Zstd (de)compressor objects are not thread safe: one per call is cheap next to the data it handles,
        # and keeps one serializer usable from many task threads at once.
        return (lambda data: zstandard.ZstdCompressor(level=zstd_level).compress(data),
                lambda data: zstandard.ZstdDecompressor().decompress(data))
    if lib == "lz4":
        try:
            import lz4.frame
        except ImportError as exc:
            raise MissingDependencyError("lz4 compression (the lz4 package)", _EXTRA, exc) from exc
        lz4_level = 0 if level is None else level
        return (lambda data: lz4.frame.compress(data, compression_level=lz4_level)), lz4.frame.decompress
    raise ConfigurationError(f"Unknown compressionlib {lib!r}; choose one of {', '.join(COMPRESSION_LIBS)}.")
