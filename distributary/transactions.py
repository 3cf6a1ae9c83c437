"""Transactions, as in Prefect 3: `with transaction():` groups task runs so that their results are written only
if the whole block succeeds, and rolled back (rollback hooks run, nothing written) if it fails.

    from distributary.transactions import transaction

    with transaction() as txn:
        a = extract()        # its persisted result is staged, not written yet
        load(a)              # if this raises, extract's result is never written and its on_rollback hooks run
    txn.is_committed()

- Staged writes: a task run inside a transaction that persists its result stages the write; the outermost
  transaction (or one with `commit_mode="EAGER"`) performs the staged writes when it commits. With
  `write_on_commit=False` writes happen at once, as outside transactions.
- Hooks: `@task.on_commit` / `@task.on_rollback` (or `on_commit=` / `on_rollback=`) take the transaction; a task
  run's hooks are registered with the transaction it completed in.
- `txn.set(name, value)` / `txn.get(name, default)` share values with nested transactions (a child sees its
  parents' values).
- `isolation_level="SERIALIZABLE"` makes concurrent runs with the same cache key compute it once (a lease in
  the result store, see `distributary.results`); `key=` names the transaction: with a store, a committed
  transaction leaves a record under its key, and `is_committed()` is then true for later transactions with that
  key.

Staging covers task runs executed in this process (inline calls and the thread runner). Task runs on the process,
Dask and Ray runners persist on their workers, outside the transaction.
"""
from __future__ import annotations

import contextlib
import contextvars
import enum
import logging
from collections.abc import Callable, Iterator
from typing import Any

from .errors import ConfigurationError

log = logging.getLogger("distributary.transactions")


class IsolationLevel(str, enum.Enum):
    READ_COMMITTED = "READ_COMMITTED"
    SERIALIZABLE = "SERIALIZABLE"


class CommitMode(str, enum.Enum):
    EAGER = "EAGER"  # commit when this transaction's block ends, even when nested
    LAZY = "LAZY"    # commit with the outermost transaction (the default)
    OFF = "OFF"      # never commit: staged writes are dropped


class TransactionState(str, enum.Enum):
    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    STAGED = "STAGED"
    COMMITTED = "COMMITTED"
    ROLLED_BACK = "ROLLED_BACK"


def _enum(cls: type[enum.Enum], value: Any, what: str) -> Any:
    if value is None or isinstance(value, cls):
        return value
    try:
        return cls(str(value).upper())
    except ValueError as exc:
        raise ConfigurationError(f"{what} must be one of {[v.value for v in cls]}, not {value!r}.") from exc


def parse_isolation_level(value: Any) -> IsolationLevel | None:
    """An IsolationLevel from an enum member or its name in any case; a misspelt name is a ConfigurationError."""
    return _enum(IsolationLevel, value, "isolation_level")


class Transaction:
    """One transaction: its options, its staged writes and hooks, its values, its parent."""

    def __init__(self, key: str | None = None, isolation_level: IsolationLevel = IsolationLevel.READ_COMMITTED,
                 store: Any = None, commit_mode: CommitMode = CommitMode.LAZY, write_on_commit: bool = True,
                 parent: Transaction | None = None):
        self.key = key
        self.isolation_level = isolation_level
        self.store = store
        self.commit_mode = commit_mode
        self.write_on_commit = write_on_commit
        self.parent = parent
        self.state = TransactionState.PENDING
        self._values: dict[str, Any] = {}
        self._writes: list[Callable[[], Any]] = []
        self._on_commit: list[Callable[[Transaction], Any]] = []
        self._on_rollback: list[Callable[[Transaction], Any]] = []
        self._children: list[Transaction] = []
        self._already_committed = False

    # -- values -------------------------------------------------------------------------------------------------
    def set(self, name: str, value: Any) -> None:
        self._values[name] = value

    def get(self, name: str, default: Any = ...) -> Any:
        txn: Transaction | None = self
        while txn is not None:
            if name in txn._values:
                return txn._values[name]
            txn = txn.parent
        if default is ...:
            raise ValueError(f"Transaction has no value named {name!r}; set it with txn.set({name!r}, ...) "
                             f"or pass a default.")
        return default

    # -- state ----------------------------------------------------------------------------------------------------
    def is_committed(self) -> bool:
        return self.state is TransactionState.COMMITTED or self._already_committed

    def is_rolled_back(self) -> bool:
        return self.state is TransactionState.ROLLED_BACK

    def is_active(self) -> bool:
        return self.state is TransactionState.ACTIVE

    def is_staged(self) -> bool:
        return self.state is TransactionState.STAGED

    def is_pending(self) -> bool:
        return self.state is TransactionState.PENDING

    # -- what task runs register ------------------------------------------------------------------------------
    def stage(self, write: Callable[[], Any], on_commit: Any = (), on_rollback: Any = ()) -> None:
        """Stage a write (performed at commit) and the hooks of the run that made it."""
        self._writes.append(write)
        self.add_hooks(on_commit, on_rollback)

    def add_hooks(self, on_commit: Any = (), on_rollback: Any = ()) -> None:
        self._on_commit.extend(on_commit)
        self._on_rollback.extend(on_rollback)

    def defers_writes(self) -> bool:
        """Whether persisted results made inside this transaction wait for its commit."""
        return self.write_on_commit and self.state is TransactionState.ACTIVE

    # -- commit and rollback ------------------------------------------------------------------------------------
    def commit(self) -> bool:
        """Perform the staged writes (of this and its lazily committed children), then run commit hooks.
        A failing write rolls everything back and is re-raised."""
        if self.state in (TransactionState.COMMITTED, TransactionState.ROLLED_BACK):
            return self.state is TransactionState.COMMITTED
        if self.commit_mode is CommitMode.OFF:
            self._writes.clear()
            self.state = TransactionState.STAGED
            return False
        txns = self._flatten()
        try:
            for txn in txns:
                for write in txn._writes:
                    write()
                txn._writes.clear()
            self._write_marker()
        except BaseException:
            self.rollback()
            raise
        for txn in txns:
            txn.state = TransactionState.COMMITTED
            for hook in txn._on_commit:
                _run_hook(hook, txn, "on_commit")
        return True

    def rollback(self) -> bool:
        """Drop the staged writes and run the rollback hooks (latest first), also of lazily committed children."""
        if self.state in (TransactionState.COMMITTED, TransactionState.ROLLED_BACK):
            return False
        for txn in reversed(self._flatten()):
            txn._writes.clear()
            txn.state = TransactionState.ROLLED_BACK
            for hook in reversed(txn._on_rollback):
                _run_hook(hook, txn, "on_rollback")
        return True

    def _flatten(self) -> list[Transaction]:
        out = [self]
        for child in self._children:
            if child.state is TransactionState.STAGED:
                out.extend(child._flatten())
        return out

    def _store(self) -> Any:
        if self.store is None:
            return None
        from .results import resolve_store

        return resolve_store(self.store)

    def _write_marker(self) -> None:
        if self.key is None or self.store is None:
            return
        from .serializers import get_serializer

        self._store().write(_marker_key(self.key), self._values or None, get_serializer("json"))

    def _check_committed(self) -> None:
        key = self.key
        store = self._store() if key is not None else None
        if key is not None and store is not None:
            self._already_committed = store.read_record(_marker_key(key)) is not None

    def __repr__(self) -> str:
        return f"Transaction(key={self.key!r}, state={self.state.value}, isolation_level={self.isolation_level.value})"


def _marker_key(key: str) -> str:
    return f"transactions-{key}"


def _run_hook(hook: Callable[[Transaction], Any], txn: Transaction, kind: str) -> None:
    try:
        hook(txn)
    except Exception:
        log.exception("The %s hook %r of %r raised; the transaction stays %s.", kind,
                      getattr(hook, "__name__", hook), txn, txn.state.value)


_CURRENT: contextvars.ContextVar[Transaction | None] = contextvars.ContextVar("distributary_transaction",
                                                                              default=None)


@contextlib.contextmanager
def transaction(key: str | None = None, store: Any = None, commit_mode: CommitMode | str | None = None,
                isolation_level: IsolationLevel | str | None = None, write_on_commit: bool = True,
                overwrite: bool = False) -> Iterator[Transaction]:
    """Run the block in a transaction. Nested transactions inherit the isolation level and store they do not set
    and commit with the outermost one (unless `commit_mode="EAGER"`).

    >>> with transaction(isolation_level="SERIALIZABLE"):
    ...     current_isolation_level()
    <IsolationLevel.SERIALIZABLE: 'SERIALIZABLE'>
    """
    outer = _CURRENT.get()
    level = parse_isolation_level(isolation_level)
    if level is None:
        level = outer.isolation_level if outer is not None else IsolationLevel.READ_COMMITTED
    mode = _enum(CommitMode, commit_mode, "commit_mode")
    if mode is None:
        mode = outer.commit_mode if outer is not None and outer.commit_mode is CommitMode.OFF else (
            CommitMode.LAZY if outer is not None else CommitMode.EAGER)
    txn = Transaction(key, level, store if store is not None else (outer.store if outer is not None else None),
                      mode, write_on_commit, outer)
    if not overwrite:
        txn._check_committed()
    token = _CURRENT.set(txn)
    txn.state = TransactionState.ACTIVE
    try:
        yield txn
    except BaseException:
        _CURRENT.reset(token)
        txn.rollback()
        raise
    _CURRENT.reset(token)
    if txn.state is not TransactionState.ACTIVE:  # rolled back or committed by hand inside the block
        return
    if outer is not None and mode is CommitMode.LAZY:
        txn.state = TransactionState.STAGED
        outer._children.append(txn)
    else:
        txn.commit()


def get_transaction() -> Transaction | None:
    """The transaction in force in this context, if any."""
    return _CURRENT.get()


def current_isolation_level() -> IsolationLevel | None:
    """The isolation level of the transaction in force, or None outside any transaction."""
    txn = _CURRENT.get()
    return txn.isolation_level if txn is not None else None


__all__ = ["IsolationLevel", "CommitMode", "TransactionState", "Transaction", "transaction", "get_transaction",
           "current_isolation_level", "parse_isolation_level"]
