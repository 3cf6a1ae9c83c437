"""The result store contract: every test runs against every backend of the `store_url` fixture (local folder,
memory://, S3 on moto and on SeaweedFS, GCS on fake-gcs-server, Azure on Azurite)."""
from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
import pickle
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pytest

from distributary.errors import CorruptResult, LockTimeoutError, MissingResult, ResultStoreError
from distributary.results import ResultRecord, ResultRef, load, resolve_store
from distributary.results.backends import crc32_hex, sampled_crc32
from distributary.results.records import INLINE_MAX, shard

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


def _count_reads(store):  # every backend read, in order: ("record" | "data", path)
    reads: list[tuple[str, str]] = []
    backend = store._backend
    original_read, original_read_data = backend.read, backend.read_data
    backend.read = lambda path: reads.append(("record", path)) or original_read(path)  # type: ignore
    backend.read_data = lambda path: reads.append(("data", path)) or original_read_data(path)  # type: ignore
    return reads


def _uncount_reads(store) -> None:
    del store._backend.read, store._backend.read_data


def test_large_result_has_its_own_object_and_a_small_record_read_in_one_small_read(store_url: StoreTarget) -> None:
    store = store_url.store()
    payload = b"p" * 2_000_000
    store.write("big", payload, "pickle", task_identity={"task_key": "mod.fn", "run": "r1"})
    meta = store.fs.cat_file(store.record_path("big"))
    assert len(meta) < 1024
    record = ResultRecord.from_json(meta)
    assert record.size >= len(payload) and record.checksum.startswith("xxh3:") and record.inline is None
    assert record.task_identity == {"task_key": "mod.fn", "run": "r1"}
    assert record.serializer["type"] == "pickle" and record.data_url == store.url + "/" + record.data_path
    assert record.data_path.startswith(shard("big") + "/big.") and record.data_path.endswith(".data")
    reads = _count_reads(store)
    try:
        assert store.read_record("big") == record
        assert reads == [("record", store.record_path("big"))]
        assert store.load("big") == payload and [kind for kind, _ in reads] == ["record", "record", "data"]
    finally:
        _uncount_reads(store)


def test_small_result_lives_inside_its_record_one_read_per_hit(store_url: StoreTarget) -> None:
    store = store_url.store()
    store.write("small", {"rows": list(range(1000))}, "json")
    at_limit = b"x" * (INLINE_MAX - 200)
    store.write("edge", at_limit, "pickle")
    reads = _count_reads(store)
    try:
        assert store.load("small") == {"rows": list(range(1000))} and store.load("edge") == at_limit
        assert [kind for kind, _ in reads] == ["record", "record"]  # one small read each, no data object
    finally:
        _uncount_reads(store)
    files = [p for p in store.fs.find(store.base_path) if "/.locks/" not in p]
    assert sorted(files) == sorted([store.record_path("small"), store.record_path("edge")])
    assert store.record_path("small") == f"{store.base_path}/{shard('small')}/small.meta.json"
    assert len(shard("small")) == 5 and shard("small")[2] == "/"  # ab/cd: sharded by a hash prefix


def test_a_store_written_in_the_flat_format_1_layout_stays_readable(store_url: StoreTarget) -> None:
    store = store_url.store()
    data = pickle.dumps({"old": True})
    big = pickle.dumps(b"o" * 3_000_000)
    if store_url.kind == "local":
        store.fs.makedirs(store.base_path, exist_ok=True)
    for key, payload in (("old-key", data), ("old-big", big)):  # exactly what distributary 0.x wrote
        store.fs.pipe_file(f"{store.base_path}/{key}", payload)
        view = memoryview(payload)
        crc = sampled_crc32(len(payload), lambda offset, n: view[offset:offset + n])
        store.fs.pipe_file(f"{store.base_path}/{key}.meta.json", json.dumps({
            "version": 1, "key": key, "data_url": f"{store.url}/{key}", "serializer": {"type": "pickle"},
            "size": len(payload), "checksum": crc32_hex(crc), "created": "2026-01-01T00:00:00+00:00",
            "expiration": None, "task_identity": None}).encode())
    assert store.exists("old-key") and store.load("old-key") == {"old": True}
    assert store.load("old-big") == b"o" * 3_000_000
    old_ref = ResultRef(store.url, "old-key", store_url.storage_options)
    assert old_ref.load() == {"old": True} and load(f"{store.url}/old-key", store_url.storage_options) == {
        "old": True}
    store.fs.pipe_file(f"{store.base_path}/old-key", data.replace(b"old", b"new"))  # damage is still caught
    with pytest.raises(CorruptResult, match="old-key"):
        store.load("old-key")
    store.write("old-key", "rewritten", "json")  # a new write goes to the sharded layout and shadows the old one
    assert store.load("old-key") == "rewritten"
    store.delete("old-key")  # deletes both layouts: the old value does not come back
    assert store.read_record("old-key") is None
    assert not store.fs.exists(f"{store.base_path}/old-key.meta.json")


def test_ref_urls_load_across_layouts(store_url: StoreTarget) -> None:
    store = store_url.store()
    ref = store.write("k", [1, 2], "json")
    options = store_url.storage_options
    assert ref.url == f"{store.url}/k" and ref.record_url == f"{store.url}/{shard('k')}/k.meta.json"
    assert load(ref.url, options) == [1, 2] and load(ref.record_url, options) == [1, 2]


def test_exists_and_expiration(store_url: StoreTarget) -> None:
    store = store_url.store()
    assert store.read_record("nothing-here") is None and not store.exists("nothing-here")
    store.write("forever", 1, "json")
    store.write("past", 2, "json", expiration=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1))
    # 2 s, not less: the checks below run against a remote object store and must finish before it passes under load
    soon_until = time.time() + 2
    store.write("soon", 3, "json", expiration=dt.timedelta(seconds=2))
    assert store.exists("forever") and not store.read_record("forever").expired
    assert not store.exists("past") and store.read_record("past").expired
    assert store.exists("soon")
    time.sleep(max(0.0, soon_until - time.time()) + 0.1)
    assert not store.exists("soon")
    assert store.read_value(store.read_record("past")) == 2  # expired means "not a cache hit", data still loads


def test_overwrite_replaces_value_and_record_and_cleans_up_the_old_data(store_url: StoreTarget) -> None:
    store = store_url.store()
    store.write("k", {"v": 1}, "json")
    first = store.read_record("k")
    store.write("k", ["second", "value", "is", "longer"], "cloudpickle", expiration=60)
    second = store.read_record("k")
    assert second.created >= first.created and second.serializer["type"] == "pickle"
    assert second.expiration is not None and second.size != first.size
    assert store.read_value(second) == ["second", "value", "is", "longer"]
    assert store.read_value(first) == {"v": 1}  # a stale inline record still describes its own value exactly

    store.write("big", b"1" * 200_000, "pickle")
    old = store.read_record("big")
    store.write("big", b"2" * 300_000, "pickle")
    new = store.read_record("big")
    assert new.data_path != old.data_path and not store.fs.exists(store.data_path(old))  # superseded: deleted
    assert store.read_value(old) == b"2" * 300_000  # a reader holding the old record finds the new result
    store.write("big", "small now", "json")
    assert not store.fs.exists(store.data_path(new)) and store.load("big") == "small now"
    assert [p for p in store.fs.find(store.base_path) if "big" in p] == [store.record_path("big")]


def test_corrupt_record_is_a_miss_with_a_warning(store_url: StoreTarget) -> None:
    store = store_url.store()
    store.write("k", 1, "json")
    store.fs.pipe_file(store.record_path("k"), b"{not json")
    with pytest.warns(RuntimeWarning, match="unreadable result record"):
        assert store.read_record("k") is None
    with pytest.warns(RuntimeWarning):
        assert not store.exists("k")
    store.write("k", 2, "json")  # the next write repairs it
    assert store.load("k") == 2


def test_missing_or_damaged_data(store_url: StoreTarget) -> None:
    store = store_url.store()
    store.write("k", list(range(30_000)), "json")  # above the inline limit: its own object
    record = store.read_record("k")
    path = store.data_path(record)
    original = store.fs.cat_file(path)
    store.fs.pipe_file(path, b"[1,2,3]")  # truncated: caught by the size
    with pytest.raises(CorruptResult, match="does not match its record"):
        store.read_value(record)
    store.fs.pipe_file(path, original.replace(b"42", b"24"))  # same size, other bytes: the checksum
    with pytest.raises(CorruptResult, match="corrupt") as info:
        store.read_value(record)
    assert "'k'" in str(info.value) and isinstance(info.value, ResultStoreError)
    store.fs.rm_file(path)
    with pytest.raises(MissingResult, match="gone") as gone:
        store.read_value(record)
    assert isinstance(gone.value, LookupError) and store.url in str(gone.value)
    with pytest.raises(MissingResult):
        store.load("never-written")

    store.write("small", "an inline value", "json")  # damage inside a record's inline bytes is caught too
    raw = json.loads(store.fs.cat_file(store.record_path("small")))
    raw["inline"] = base64.b64encode(b'"an inline valuE"').decode()
    store.fs.pipe_file(store.record_path("small"), json.dumps(raw).encode())
    with pytest.raises(CorruptResult, match="small"):
        store.load("small")


def test_one_flipped_byte_anywhere_in_a_4_mib_result_is_detected(store_url: StoreTarget) -> None:
    store = store_url.store()
    value = os.urandom(4 * 2**20)
    store.write("four", value, "pickle")
    record = store.read_record("four")
    path = store.data_path(record)
    original = store.fs.cat_file(path)
    # Offsets between the blocks the old sampled CRC32 read, and the very first and last bytes.
    for offset in (0, 100_000, 1_500_000, 2**21 + 12_345, len(original) - 1):
        damaged = bytearray(original)
        damaged[offset] ^= 0x01
        store.fs.pipe_file(path, bytes(damaged))
        with pytest.raises(CorruptResult, match="four"):
            store.read_value(record)
    store.fs.pipe_file(path, original)
    assert store.read_value(record) == value


def test_a_record_naming_another_serializer_says_so(store_url: StoreTarget) -> None:
    store = store_url.store()
    store.write("k", b"\xff\xfe not utf-8 " * 10, "pickle")
    raw = json.loads(store.fs.cat_file(store.record_path("k")))
    raw["serializer"] = {"type": "json"}  # the record says JSON, the bytes are a pickle
    store.fs.pipe_file(store.record_path("k"), json.dumps(raw).encode())
    with pytest.raises(ResultStoreError, match=r"k\.meta\.json.*serializer its record names \('json'\)"):
        store.load("k")


def test_lease_is_exclusive_and_renewed_while_held(store_url: StoreTarget) -> None:
    store = store_url.store()
    # A ttl of seconds, not tenths: each renewal is three requests, and an emulated bucket on a loaded machine can
    # take longer than a tenths-of-a-second ttl to answer them (the lease then expires, as it should).
    with store.lease("k", ttl=3.0) as held:
        assert held.held
        time.sleep(4.0)  # longer than the ttl: only renewal keeps it
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


def _holder(store_url: StoreTarget, key: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("store_worker.py")), "hold",
                             store_url.url, key], env=store_url.subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "holding", proc.communicate()
    return proc


@pytest.mark.parametrize("store_url", ["local", "s3", "seaweed", "gcs", "azure"], indirect=True)  # memory:// is one process
def test_a_sigkilled_holder_on_this_host_is_taken_over_at_once(store_url: StoreTarget, caplog) -> None:
    store = store_url.store()
    proc = _holder(store_url, "dead")
    try:
        body = json.loads(store._lock_read("dead"))
        assert body["pid"] == proc.pid and body["host"] and body["start"]
        with pytest.raises(LockTimeoutError):  # alive: its 120 s lease holds
            store.lease("dead", ttl=5, timeout=0.5).acquire()
    finally:
        proc.kill()  # SIGKILL: it never releases, and its lease has ~2 minutes to run
        proc.communicate()
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="distributary.results"):
        with store.lease("dead", ttl=5, timeout=10) as taker:
            assert taker.held and time.monotonic() - started < 3
    assert any("is gone" in r.getMessage() and str(proc.pid) in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("store_url", ["local", "s3"], indirect=True)
def test_a_waiter_logs_who_it_waits_for(store_url: StoreTarget, caplog, monkeypatch) -> None:
    from distributary.results import locks

    monkeypatch.setattr(locks, "WAIT_LOG_AFTER", 0.3)
    store = store_url.store()
    proc = _holder(store_url, "busy")
    try:
        with caplog.at_level(logging.INFO, logger="distributary.results"):
            with pytest.raises(LockTimeoutError):
                store.lease("busy", ttl=5, timeout=1.5).acquire()
    finally:
        proc.kill()
        proc.communicate()
    waiting = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Waiting")]
    assert waiting and "'busy'" in waiting[0] and f":{proc.pid}:" in waiting[0], waiting
    assert all(r.levelno == logging.INFO for r in caplog.records if r.getMessage().startswith("Waiting"))


def test_a_holder_that_lost_its_lease_does_not_overwrite_a_newer_result(store_url: StoreTarget, caplog) -> None:
    store = store_url.store()
    slow = store.lease("k", ttl=0.4)
    outcome: list[object] = []
    acquired, written = threading.Event(), threading.Event()

    def slow_run() -> None:  # holds the lease, hangs past its ttl without renewing, then tries to write
        slow.acquire()
        slow._stop.set()
        slow._renewer.join()
        acquired.set()
        assert written.wait(60)
        outcome.append(slow.still_held())
        store.write("k", "stale value from the hung holder", "json")
        slow.release()

    thread = threading.Thread(target=slow_run)
    thread.start()
    assert acquired.wait(60)
    with store.lease("k", ttl=5, timeout=30):  # the lease expires: this run takes it over and writes
        store.write("k", "the newer value", "json")
        written.set()
    with caplog.at_level(logging.WARNING, logger="distributary.results"):
        thread.join()
    assert outcome == [False] and slow.lost
    assert store.load("k") == "the newer value"
    assert any("lease on the key was lost" in r.getMessage() for r in caplog.records)


def test_renewal_is_conditional(store_url: StoreTarget) -> None:
    store = store_url.store()
    lease = store.lease("k", ttl=30)
    lease.acquire()
    try:
        assert lease.renew() and lease.still_held()
        store._lock_delete("k")
        other = store.lease("k", ttl=30)
        other.acquire()  # someone else holds it now
        assert not lease.renew() and lease.lost
        assert json.loads(store._lock_read("k"))["holder"] == other.holder  # the loser did not overwrite it
        other.release()
    finally:
        lease.release()
