"""The one small interface every serializer implements: `dumps`/`loads` bytes, and a JSON-safe `to_spec()`."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, BinaryIO, ClassVar

from ..errors import SerializationError


class Serializer(ABC):
    """Turns values into bytes and back.

    Subclasses set `type` (the name they are registered under, see `register_serializer`) and implement `dumps`
    and `loads`. `to_spec()` must return everything `get_serializer(spec)` needs to rebuild an equal serializer
    in another process; the base version returns `{"type": self.type}`, enough for serializers without options.

    `dump(obj, file)` streams to a binary file; the result store uses it for local files, so a serializer that can
    write without first building the whole payload in memory (Arrow IPC, pickle) should override it.

    Example::

        class UpperSerializer(Serializer):
            type = "upper"
            def dumps(self, obj): return str(obj).upper().encode()
            def loads(self, data): return bytes(data).decode()
        register_serializer("upper", UpperSerializer)
    """

    type: ClassVar[str]

    @abstractmethod
    def dumps(self, obj: Any) -> bytes:
        """The bytes that represent `obj`. Raises `SerializationError` for a value this serializer cannot handle."""

    @abstractmethod
    def loads(self, data: bytes | bytearray | memoryview) -> Any:
        """The value that `dumps` turned into `data`."""

    def dump(self, obj: Any, file: BinaryIO) -> None:
        """Write the bytes of `obj` to `file` (default: `file.write(self.dumps(obj))`)."""
        file.write(self.dumps(obj))

    def to_spec(self) -> dict[str, Any]:
        """A JSON-safe description from which `get_serializer` rebuilds this serializer."""
        return {"type": self.type}

    def cannot_serialize(self, obj: Any, exc: BaseException | None = None,
                         hint: str = 'Use another serializer for this value, e.g. result_serializer="cloudpickle".'
                         ) -> SerializationError:
        """The error to raise for a value this serializer cannot handle (the caller adds `from exc`)."""
        why = f" ({type(exc).__name__}: {exc})" if exc is not None else ""
        return SerializationError(
            f"The {self.type!r} serializer cannot serialize a value of type "
            f"{type(obj).__module__}.{type(obj).__qualname__}{why}. {hint}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Serializer):
            return NotImplemented
        return self.to_spec() == other.to_spec()

    def __hash__(self) -> int:
        return hash(repr(sorted(self.to_spec().items())))

    def __repr__(self) -> str:
        options = {k: v for k, v in self.to_spec().items() if k != "type"}
        args = ", ".join(f"{k}={v!r}" for k, v in options.items())
        return f"{type(self).__name__}({args})"
