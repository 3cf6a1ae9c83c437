"""The result store contract: every test runs against every backend of the `store_url` fixture (local folder,
memory://, S3 on moto, GCS on fake-gcs-server, Azure on Azurite)."""
from __future__ import annotations

import datetime as dt
import json
import pickle
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pytest

from distributary.errors import LockTimeoutError, MissingResult, ResultStoreError
from distributary.results import ResultRecord, ResultRef, load, resolve_store
from distributary.results.store import META_SUFFIX

from conftest import StoreTarget, run_worker  # tests/results/conftest.py


def _values() -> dict[str, object]:
    table = pa.table({"n": list(range(1000)), "s": [str(i) for i in range(1000)]})
    return {
        "cloudpickle": {"f": (lambda x: x + 1)(1), "t": (1, "two"), "set": {3}},
        "pickle": [1, 2.5, None, b"\x00bytes"],
        "json": {"when": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), "pair": (1, 2), "s": {"a"}},
        "arrow": table,
        "compressed/json": {"rows": list(range(500))},
        "compressed/pickle": b"x" * 100_000,
    }


def test_round_trip_every_serializer(store_url: StoreTarget) -> None:
    store = store_url.store()
    for name, value in _values().items():
        key = f"rt-{name.replace('/', '-')}"
        ref = store.write(key, value, name)
        assert isinstance(ref, ResultRef) and ref.url == f"{store.url}/{key}"
        loaded = store.read_value(store.read_record(key))
        assert loaded.equals(value) if isinstance(value, pa.Table) else loaded == value, name
        assert ref.load() == loaded if not isinstance(value, pa.Table) else ref.load().equals(value)


def test_metadata_is_separate_small_and_read_in_one_small_read(store_url: StoreTarget) -> None:
    store = store_url.store()
    payload = b"p" * 2_000_000
    store.write("big", payload, "pickle", task_identity={"task_key": "mod.fn", "run": "r1"})
    meta = store.fs.cat_file(store.path("big") + META_SUFFIX)
    assert len(meta) < 1024
    record = ResultRecord.from_json(meta)
    assert record.size >= len(payload) and record.checksum.startswith("crc32s:")
    assert record.task_identity == {"task_key": "mod.fn", "run": "r1"}
    assert record.data_url == store.data_url("big") and record.serializer["type"] == "pickle"

    reads: list[str] = []
    backend = store._backend
    original_read, original_read_data = backend.read, backend.read_data
    backend.read = lambda path: reads.append(path) or original_read(path)  # type: ignore[method-assign]
    backend.read_data = lambda path: reads.append("DATA " + path) or original_read_data(path)  # type: ignore
    try:
        assert store.read_record("big") == record
        assert reads == [store.path("big") + META_SUFFIX]
    finally:
        del backend.read, backend.read_data


def test_exists_and_expiration(store_url: StoreTarget) -> None:
    store = store_url.store()
    assert store.read_record("nothing-here") is None and not store.exists("nothing-here")
    store.write("forever", 1, "json")
    store.write("past", 2, "json", expiration=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1))
    store.write("soon", 3, "json", expiration=dt.timedelta(seconds=0.3))
    assert store.exists("forever") and not store.read_record("forever").expired
    assert not store.exists("past") and store.read_record("past").expired
    assert store.exists("soon")
    time.sleep(0.35)
    assert not store.exists("soon")
    assert store.read_value(store.read_record("past")) == 2  # expired means "not a cache hit", data still loads


def test_overwrite_replaces_value_and_record(store_url: StoreTarget) -> None:
    store = store_url.store()
    store.write("k", {"v": 1}, "json")
    first = store.read_record("k")
    store.write("k", ["second", "value", "is", "longer"], "cloudpickle", expiration=60)
    second = store.read_record("k")
    assert second.created >= first.created and second.serializer["type"] == "pickle"
    assert second.expiration is not None and second.size != first.size
    assert store.read_value(second) == ["second", "value", "is", "longer"]
    assert store.read_value(first) == ["second", "value", "is", "longer"]  # stale record: re-read, not garbage


def test_corrupt_record_is_a_miss_with_a_warning(store_url: StoreTarget) -> None:
    store = store_url.store()
    store.write("k", 1, "json")
    store.fs.pipe_file(store.path("k") + META_SUFFIX, b"{not json")
    with pytest.warns(RuntimeWarning, match="unreadable result record"):
        assert store.read_record("k") is None
    with pytest.warns(RuntimeWarning):
        assert not store.exists("k")
    store.write("k", 2, "json")  # the next write repairs it
    assert store.load("k") == 2


def test_missing_or_damaged_data(store_url: StoreTarget) -> None:
    store = store_url.store()
    store.write("k", list(range(100)), "json")
    record = store.read_record("k")
    original = store.fs.cat_file(store.path("k"))
    store.fs.pipe_file(store.path("k"), b"[1,2,3]")  # truncated: caught by the size
    with pytest.raises(ResultStoreError, match="does not match its record"):
        store.read_value(record)
    store.fs.pipe_file(store.path("k"), original.replace(b"42", b"24"))  # same size, other bytes: the checksum
    with pytest.raises(ResultStoreError, match="corrupt"):
        store.read_value(record)
    store.fs.rm_file(store.path("k"))
    with pytest.raises(MissingResult, match="gone") as info:
        store.read_value(record)
    assert isinstance(info.value, LookupError) and store.url in str(info.value)
    with pytest.raises(MissingResult):
        store.load("never-written")


def test_lease_is_exclusive_and_renewed_while_held(store_url: StoreTarget) -> None:
    store = store_url.store()
    with store.lease("k", ttl=0.6) as held:
        assert held.held
        time.sleep(1.0)  # longer than the ttl: only renewal keeps it
        with pytest.raises(LockTimeoutError, match=store.url):
            store.lease("k", ttl=5, timeout=0.3).acquire()
        assert not held.lost
    with store.lease("k", ttl=5, timeout=2) as second:  # released: free at once
        assert second.held
    assert store._lock_read("k") is None


def test_expired_lease_is_taken_over(store_url: StoreTarget) -> None:
    store = store_url.store()
    dead = store.lease("k", ttl=0.4)
    dead.acquire()
    dead._stop.set()  # the holder "dies": no more renewals, and it never releases
    dead._renewer.join()
    started = time.monotonic()
    with store.lease("k", ttl=5, timeout=10) as taker:
        assert taker.held and time.monotonic() - started < 5
        assert not dead.renew() and dead.lost  # the old holder finds out at its next renewal
    dead.held = False


def test_ref_loads_in_another_process(store_url: StoreTarget, tmp_path: Path) -> None:
    store = store_url.store()
    ref = store.write("shared", {"numbers": [1, 2, 3]}, "json")
    assert "secret" not in json.dumps(ref.storage_options) and "AccountKey" not in json.dumps(ref.storage_options)
    ref_file = tmp_path / "ref.pkl"
    ref_file.write_bytes(pickle.dumps(ref))
    result = run_worker(store_url, "load", str(ref_file))
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    if store_url.kind == "memory":  # memory:// lives inside one process: elsewhere the result does not exist
        assert "missing" in answer
    else:
        assert answer == {"value": {"numbers": [1, 2, 3]}}
        assert load(ref.url, ref.storage_options) == {"numbers": [1, 2, 3]}


def test_racing_processes_hold_the_lease_one_at_a_time(store_url: StoreTarget, tmp_path: Path) -> None:
    log = tmp_path / "lease.log"
    if store_url.kind == "memory":  # one process: race threads instead
        store = store_url.store()

        def hold() -> None:
            with store.lease("race", ttl=5, timeout=30):
                with open(log, "a") as f:
                    f.write(f"{threading.get_ident()} enter {time.time():.6f}\n")
                time.sleep(0.2)
                with open(log, "a") as f:
                    f.write(f"{threading.get_ident()} exit {time.time():.6f}\n")

        threads = [threading.Thread(target=hold) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        procs = [subprocess.Popen([sys.executable, str(Path(__file__).with_name("store_worker.py")), "lease",
                                   store_url.url, "race", str(log), "0.3"], env=store_url.subprocess_env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
        for p in procs:
            _, err = p.communicate(timeout=90)
            assert p.returncode == 0, err
    events: dict[str, dict[str, float]] = defaultdict(dict)
    for line in log.read_text().splitlines():
        who, what, when = line.split()
        events[who][what] = float(when)
    spans = sorted((e["enter"], e["exit"]) for e in events.values())
    assert len(spans) == 3
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end, f"two holders at once: {spans}"
    assert resolve_store(store_url.url, store_url.storage_options or None)._lock_read("race") is None
