"""resolve_store: the spec forms it accepts, per-process caching, pickling, and which options travel in refs."""
from __future__ import annotations

import pickle
from pathlib import Path

import fsspec
import pytest

from distributary.errors import ConfigurationError, MissingResult
from distributary.integrations.storage import effective_storage_options, public_storage_options
from distributary.results import ResultRef, ResultStore, load, resolve_store


def test_local_spellings_resolve_to_one_canonical_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = resolve_store(str(tmp_path / "s"))
    assert store.url == f"file://{tmp_path}/s" and store.is_local
    assert resolve_store(f"file://{tmp_path}/s").url == store.url
    assert resolve_store("s").url == store.url  # relative to the working directory
    assert resolve_store(tmp_path / "s") is store  # PathLike, and cached
    assert resolve_store(store) is store


def test_memory_and_filesystem_instances() -> None:
    a = resolve_store("memory://resolve-test/x")
    assert resolve_store("memory:///resolve-test/x") is a
    fs = fsspec.filesystem("memory")
    b = resolve_store(fs, base_path="/resolve-test/x")
    assert b.url == a.url
    a.write("k", 5, "json")
    assert b.load("k") == 5


def test_store_and_ref_pickle_by_url(tmp_path: Path) -> None:
    store = resolve_store(str(tmp_path))
    ref = store.write("deep/key", {"v": 1}, "json")
    assert pickle.loads(pickle.dumps(store)) is store  # same process: the cached store
    assert b"LocalFileSystem" not in pickle.dumps(store)
    again = pickle.loads(pickle.dumps(ref))
    assert isinstance(again, ResultRef) and again == ref and again.load() == {"v": 1}
    with pytest.raises(MissingResult):
        load(f"file://{tmp_path}/no/such/key")


def test_load_by_url(tmp_path: Path) -> None:
    store = resolve_store(str(tmp_path))
    ref = store.write("k", [1], "json")
    assert load(ref.url) == [1] and load(ref.record_url) == [1] and load(ref) == [1]


def test_invalid_keys_and_specs(tmp_path: Path) -> None:
    store = resolve_store(str(tmp_path))
    for bad in ("", "/abs", "a/../b", "a//b", ".locks/x", "x.meta.json", "a\\b"):
        with pytest.raises(ConfigurationError):
            store.write(bad, 1, "json")
    with pytest.raises(ConfigurationError):
        resolve_store(42)


def test_secrets_stay_out_of_refs() -> None:
    options = {"key": "AKIA", "secret": "s3cr3t", "token": "tok", "anon": False,
               "client_kwargs": {"endpoint_url": "http://h:1", "aws_secret_access_key": "x"},
               "connection_string": "AccountKey=...", "account_name": "acct", "sas_token": "sig"}
    assert public_storage_options(options) == {"anon": False, "client_kwargs": {"endpoint_url": "http://h:1"},
                                               "account_name": "acct"}
    assert public_storage_options({"token": "anon", "project": "p"}) == {"token": "anon", "project": "p"}
    store = ResultStore(fsspec.filesystem("memory"), "/secret-test", options)
    assert "s3cr3t" not in repr(store.ref("k").storage_options)


def test_environment_and_explicit_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "from-env")
    assert effective_storage_options("gs", {}) == {"project": "from-env"}
    assert effective_storage_options("gcs", {"project": "explicit"}) == {"project": "explicit"}
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    # botocore >= 1.31 reads AWS_ENDPOINT_URL itself, so nothing is copied; explicit options still merge.
    merged = effective_storage_options("s3", {"client_kwargs": {"region_name": "eu-west-1"}})
    assert merged["client_kwargs"]["region_name"] == "eu-west-1"


def test_futures_inside_container_subclasses_resolve_and_keep_their_type():
    from collections import OrderedDict, defaultdict

    from distributary import flow, task
    from distributary.utilities.annotations import opaque

    class MyList(list):
        pass

    @task
    def one() -> int:
        return 1

    @task
    def show(x):
        return x

    @task
    def square(x: int) -> int:
        return x * x

    @task
    def kinds(x):
        return [type(v).__name__ for v in x]

    @flow
    def f():
        od = show(OrderedDict(a=one.submit()))
        dd = show(defaultdict(int, a=one.submit()))
        ml = show(MyList([one.submit()]))
        fl = show(square.map([1, 1]))
        op = show(opaque(one.submit()))
        inner = kinds(opaque([one.submit()]))
        return od, dd, ml, fl, op, inner

    od, dd, ml, fl, op, inner = f()
    assert type(od) is OrderedDict and od == {"a": 1}
    assert type(dd) is defaultdict and dd == {"a": 1} and dd["missing"] == 0
    assert type(ml) is MyList and ml == [1]
    assert type(fl) is list and fl == [1, 1]
    assert op == 1  # a future at the top of opaque(...) resolves
    assert inner == ["LocalFuture"]  # but nothing inside its value is walked
