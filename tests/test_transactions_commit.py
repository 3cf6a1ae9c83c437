"""Transactions as in Prefect 3: staged writes committed only when the block succeeds, hooks, values, nesting."""
from __future__ import annotations

import pytest

from distributary import flow, task
from distributary.results import resolve_store
from distributary.transactions import CommitMode, get_transaction, transaction


def test_a_failed_transaction_writes_nothing_and_runs_rollback_hooks_once(tmp_path):
    store_url = str(tmp_path / "store")
    calls: list[str] = []

    @task(persist_result=True, result_storage=store_url, result_storage_key="first-{parameters[x]}")
    def first(x: int) -> int:
        return x

    @first.on_rollback
    def undo(txn):
        calls.append(f"rollback:{txn.state.value}")

    @first.on_commit
    def done(txn):
        calls.append("commit")

    @task
    def second():
        raise RuntimeError("second fails")

    @flow
    def pipeline():
        with transaction():
            first(1)
            second()

    with pytest.raises(RuntimeError, match="second fails"):
        pipeline()
    assert calls == ["rollback:ROLLED_BACK"]
    assert resolve_store(store_url).read_record("first-1") is None  # nothing was written

    @flow
    def ok_pipeline():
        with transaction() as txn:
            first(2)
        return txn.is_committed()

    assert ok_pipeline() is True
    assert calls[-1] == "commit"
    assert resolve_store(store_url).read_record("first-2") is not None


def test_values_nesting_and_commit_modes(tmp_path):
    with transaction(key="outer") as outer:
        outer.set("k", 1)
        with transaction() as inner:
            assert inner.get("k") == 1 and get_transaction() is inner
            assert inner.get("missing", "d") == "d"
            with pytest.raises(ValueError, match="missing"):
                inner.get("missing")
        assert inner.is_staged() and not inner.is_committed()  # commits with the outermost
    assert outer.is_committed() and inner.is_committed()
    with transaction(commit_mode=CommitMode.OFF) as off:
        pass
    assert not off.is_committed()
    with pytest.raises(Exception, match="commit_mode"), transaction(commit_mode="SOMETIMES"):
        pass


def test_a_keyed_transaction_is_committed_for_later_ones(tmp_path):
    store = str(tmp_path / "s")
    with transaction(key="daily-load", store=store) as txn:
        assert not txn.is_committed()
    with transaction(key="daily-load", store=store) as again:
        assert again.is_committed()


def test_write_on_commit_false_writes_at_once(tmp_path):
    store_url = str(tmp_path / "store")

    @task(persist_result=True, result_storage=store_url, result_storage_key="now")
    def now() -> int:
        return 5

    @flow
    def f():
        with transaction(write_on_commit=False):
            now()
            assert resolve_store(store_url).read_record("now") is not None
            raise KeyError("after the write")

    with pytest.raises(KeyError):
        f()
    assert resolve_store(store_url).read_record("now") is not None


def test_task_on_running_hooks_run_for_each_attempt():
    seen: list[str] = []

    @task(retries=1, on_running=[lambda t, r, s: seen.append(s.name)])
    def flaky():
        if len(seen) < 2:
            raise ValueError("first attempt")
        return "ok"

    @flow
    def f():
        return flaky()

    assert f() == "ok"
    assert seen == ["Running", "Retrying"]


def test_the_keyword_hook_forms_and_is_rolled_back(tmp_path):
    """`@task(on_commit=[...], on_rollback=[...])`, as Prefect 3 takes them, and `txn.is_rolled_back()`."""
    calls: list[str] = []
    seen: dict[str, object] = {}

    @task(persist_result=True, result_storage=str(tmp_path / "s"), result_storage_key="kw-{parameters[x]}",
          on_commit=[lambda txn: calls.append("commit")], on_rollback=[lambda txn: calls.append("rollback")])
    def step(x: int) -> int:
        return x

    @flow
    def fails():
        try:
            with transaction() as txn:
                seen["txn"] = txn
                step(1)
                raise ValueError("later step fails")
        except ValueError:
            return "caught"

    assert fails() == "caught"
    txn = seen["txn"]
    assert txn.is_rolled_back() and not txn.is_committed()  # type: ignore[attr-defined]
    assert calls == ["rollback"]

    @flow
    def commits():
        with transaction() as txn:
            step(2)
        return txn.is_committed(), txn.is_rolled_back()

    assert commits() == (True, False)
    assert calls == ["rollback", "commit"]
