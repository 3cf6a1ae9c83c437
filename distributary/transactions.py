"""`transaction(...)` and `IsolationLevel`, as in Prefect 3 (a small subset).

Inside `with transaction(isolation_level=IsolationLevel.SERIALIZABLE):` the engine takes a lease on each cache
key before computing it (`ResultStore.lease`), so concurrent runs with the same key compute it once; under
READ_COMMITTED (the default) they may both compute it and the last write wins.
"""
from __future__ import annotations

import contextlib
import contextvars
import enum
from dataclasses import dataclass
from typing import Any, Iterator

from .errors import ConfigurationError


class IsolationLevel(str, enum.Enum):
    READ_COMMITTED = "READ_COMMITTED"
    SERIALIZABLE = "SERIALIZABLE"


@dataclass(frozen=True)
class Transaction:
    """The transaction in force: an optional key, its isolation level and its result store (URL or store)."""

    key: str | None = None
    isolation_level: IsolationLevel = IsolationLevel.READ_COMMITTED
    store: Any = None


_CURRENT: contextvars.ContextVar[Transaction | None] = contextvars.ContextVar("distributary_transaction",
                                                                              default=None)


@contextlib.contextmanager
def transaction(key: str | None = None, isolation_level: IsolationLevel | str | None = None,
                store: Any = None) -> Iterator[Transaction]:
    """Run the block in a transaction. Nested transactions inherit the isolation level and store they do not set.

    >>> with transaction(isolation_level="SERIALIZABLE"):
    ...     current_isolation_level()
    <IsolationLevel.SERIALIZABLE: 'SERIALIZABLE'>
    """
    outer = _CURRENT.get()
    if isolation_level is None:
        level = outer.isolation_level if outer is not None else IsolationLevel.READ_COMMITTED
    else:
        try:
            level = IsolationLevel(isolation_level.upper() if isinstance(isolation_level, str) else isolation_level)
        except ValueError as exc:
            raise ConfigurationError(f"isolation_level must be one of {[lvl.value for lvl in IsolationLevel]}, "
                                     f"not {isolation_level!r}.") from exc
    txn = Transaction(key, level, store if store is not None else (outer.store if outer is not None else None))
    token = _CURRENT.set(txn)
    try:
        yield txn
    finally:
        _CURRENT.reset(token)


def get_transaction() -> Transaction | None:
    """The transaction in force in this context, if any."""
    return _CURRENT.get()


def current_isolation_level() -> IsolationLevel | None:
    """The isolation level of the transaction in force, or None outside any transaction."""
    txn = _CURRENT.get()
    return txn.isolation_level if txn is not None else None


__all__ = ["IsolationLevel", "Transaction", "transaction", "get_transaction", "current_isolation_level"]
