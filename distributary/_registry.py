"""One registry for every extension point (runners now; serializers, storage protocols, block types, worker
types, schedule kinds and run-store backends next): names map to objects or to "module:attr" dotted paths
imported on first use; a name not registered is looked up in the `entry_point_group` entry points (third-party
packages) before the lookup fails with one wording that lists the valid names.
"""
from __future__ import annotations

import importlib
import threading
from typing import Any, Generic, TypeVar

from .errors import ConfigurationError, MissingDependencyError, UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one `kind` (e.g. "task runner"). `register(name, target, extra=None)`: `target` is the
    object or a "module:attr" path; `extra` names the `pip install "distributary[extra]"` that provides its
    imports. `get(name)` imports on first use and caches."""

    def __init__(self, kind: str, entry_point_group: str | None = None, hint: str = ""):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self.hint = hint  # appended to the unknown-name message, e.g. "Or pass a TaskRunner instance."
        self._targets: dict[str, tuple[Any, str | None]] = {}
        self._loaded: dict[str, T] = {}
        self._lock = threading.Lock()
        self._missed: set[str] = set()  # names the entry points were searched for in vain

    def register(self, name: str, target: T | str, extra: str | None = None, *, replace: bool = False) -> None:
        """Register `target` under `name`; a different target under a taken name is refused (ConfigurationError)
        unless `replace`; the same target again does nothing."""
        with self._lock:
            old = self._targets.get(name)
            if old is not None and old[0] != target and not replace:
                raise ConfigurationError(f"A {self.kind} named {name!r} is already registered "
                                         f"({_describe(old[0])}); pick another name.")
            self._targets[name] = (target, extra)
            self._loaded.pop(name, None)
            self._missed.discard(name)

    def unregister(self, name: str) -> None:
        """Forget `name` (a no-op if it is not registered)."""
        with self._lock:
            self._targets.pop(name, None)
            self._loaded.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._targets)

    def __contains__(self, name: object) -> bool:
        return name in self._targets or (isinstance(name, str) and self._from_entry_points(name))

    def target(self, name: str) -> tuple[Any, str | None]:
        """The registered (target, extra) of `name` (entry points read on a miss)."""
        entry = self._targets.get(name)
        if entry is None and self._from_entry_points(name):
            entry = self._targets.get(name)
        if entry is None:
            valid = ", ".join(self.names()) or "(none)"
            raise UnknownNameError(f"Unknown {self.kind} {name!r}; valid names are: {valid}."
                                   + (f" {self.hint}" if self.hint else ""))
        return entry

    def get(self, name: str) -> T:
        """The object registered as `name`, importing it on first use."""
        hit = self._loaded.get(name)
        if hit is not None:
            return hit
        target, extra = self.target(name)
        obj: T = load_dotted(target, f"The {name!r} {self.kind}", extra) if isinstance(target, str) else target
        self._loaded[name] = obj
        return obj

    def _from_entry_points(self, name: str) -> bool:
        """Register `name` from the entry points of `entry_point_group` (read once per miss). True if found."""
        if self.entry_point_group is None or name in self._missed:
            return False
        from importlib.metadata import entry_points

        found = False
        for ep in entry_points(group=self.entry_point_group):
            if ep.name not in self._targets:
                self._targets[ep.name] = (ep.value, None)
            found = found or ep.name == name
        if not found:
            self._missed.add(name)
        return found


def load_dotted(path: str, what: str, extra: str | None = None) -> Any:
    """Import "module:attr" (or "module.attr"); a missing optional package raises MissingDependencyError
    naming `pip install "distributary[extra]"`."""
    module, _, attr = path.partition(":") if ":" in path else path.rpartition(".")
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        ours = (exc.name or "").startswith("distributary")  # our own module failing is not a missing extra
        if extra is not None and not ours and not isinstance(exc, MissingDependencyError):
            raise MissingDependencyError(what, extra, exc) from exc
        raise
    obj = mod
    try:
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError as exc:
        raise ConfigurationError(f"{what}: {module} has no attribute {attr!r}.") from exc
    return obj


def _describe(target: Any) -> str:
    if isinstance(target, str):
        return target
    name: str | None = getattr(target, "__qualname__", None)
    return f"{getattr(target, '__module__', '?')}:{name}" if name else repr(target)


__all__ = ["Registry", "load_dotted"]
