"""transaction() sets the isolation level (and store) for the code inside it, nesting like Prefect's."""
from __future__ import annotations

import threading

import pytest

from distributary.errors import ConfigurationError
from distributary.transactions import IsolationLevel, current_isolation_level, get_transaction, transaction


def test_transaction_sets_and_restores_the_isolation_level() -> None:
    assert current_isolation_level() is None and get_transaction() is None
    with transaction(key="k", isolation_level="serializable", store="memory://t") as txn:
        assert current_isolation_level() is IsolationLevel.SERIALIZABLE and txn.key == "k"
        with transaction() as inner:  # inherits what it does not set
            assert inner.isolation_level is IsolationLevel.SERIALIZABLE and inner.store == "memory://t"
        with transaction(isolation_level=IsolationLevel.READ_COMMITTED):
            assert current_isolation_level() is IsolationLevel.READ_COMMITTED
        assert get_transaction() is txn
    assert current_isolation_level() is None


def test_transaction_is_per_thread_context() -> None:
    seen = []
    with transaction(isolation_level="SERIALIZABLE"):
        t = threading.Thread(target=lambda: seen.append(current_isolation_level()))
        t.start()
        t.join()
    assert seen == [None]


def test_bad_isolation_level() -> None:
    with pytest.raises(ConfigurationError, match="READ_COMMITTED"), transaction(isolation_level="EVENTUAL"):
        pass
