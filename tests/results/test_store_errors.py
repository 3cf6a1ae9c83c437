"""How the result store fails: unreachable endpoints, wrong credentials, missing buckets, unknown protocols and
writers killed mid-write. Every error names the URL and says what to do."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import fsspec
import pytest

from distributary.errors import ConfigurationError, LockTimeoutError, MissingDependencyError, MissingResult
from distributary.errors import ResultStoreError
from distributary.results import resolve_store

from servers import Endpoint, free_port

FAST_S3 = {"config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1, "read_timeout": 2}}


def _bucket(protocol: str, options: dict) -> str:
    name = f"e-{uuid.uuid4().hex[:16]}"
    fsspec.filesystem(protocol, skip_instance_cache=True, **options).mkdir(name)
    return name


def test_unreachable_endpoint_fails_fast_naming_the_url() -> None:
    port = free_port()  # nothing listens there
    options = {"key": "k", "secret": "s", "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}"}, **FAST_S3}
    store = resolve_store("s3://nowhere/results", options)
    started = time.monotonic()
    with pytest.raises(ResultStoreError, match=r"s3://nowhere/results/\S*k") as info:
        store.write("k", 1, "json")
    assert "reachable" in str(info.value) and info.value.__cause__ is not None
    with pytest.raises(ResultStoreError, match=r"s3://nowhere/results/../../k.meta.json"):
        store.read_record("k")  # an unreachable store is an error, not a cache miss
    assert time.monotonic() - started < 20


def test_wrong_credentials_on_a_real_s3_server(seaweed_s3: Endpoint) -> None:
    bucket = _bucket("s3", seaweed_s3.storage_options)
    wrong = {**seaweed_s3.storage_options, "secret": "not-the-secret", **FAST_S3}
    store = resolve_store(f"s3://{bucket}/results", wrong)
    with pytest.raises(ResultStoreError, match=rf"s3://{bucket}/results/\S*k") as info:
        store.write("k", 1, "json")
    assert "credentials" in str(info.value)
    with pytest.raises(ResultStoreError, match="credentials"):
        store.read_record("k")
    good = resolve_store(f"s3://{bucket}/results", seaweed_s3.storage_options)
    good.write("k", {"ok": True}, "json")
    assert good.load("k") == {"ok": True}


def test_conditional_create_makes_leases_exclusive_on_a_real_s3_server(seaweed_s3: Endpoint) -> None:
    store = resolve_store(f"s3://{_bucket('s3', seaweed_s3.storage_options)}/results", seaweed_s3.storage_options)
    assert store._lock_create("k", b"first") and not store._lock_create("k", b"second")
    assert store._lock_read("k") == b"first"
    store._lock_delete("k")
    with store.lease("k", ttl=5):
        with pytest.raises(LockTimeoutError):
            store.lease("k", ttl=5, timeout=0.3).acquire()


@pytest.mark.parametrize("kind", ["s3", "gcs", "azure"])
def test_bucket_that_does_not_exist(kind: str, request: pytest.FixtureRequest) -> None:
    server: Endpoint = request.getfixturevalue({"s3": "moto_s3", "gcs": "fake_gcs", "azure": "azurite"}[kind])
    scheme = {"s3": "s3", "gcs": "gs", "azure": "az"}[kind]
    url = f"{scheme}://no-such-bucket-{uuid.uuid4().hex[:8]}/results"
    store = resolve_store(url, server.storage_options)
    assert store.read_record("k") is None  # nothing there: a miss
    with pytest.raises(ResultStoreError, match="does not exist") as info:
        store.write("k", 1, "json")
    assert url.split("://")[1] in str(info.value) and "Create it" in str(info.value)


def test_unknown_protocol_names_the_url() -> None:
    with pytest.raises(ConfigurationError, match=r"nosuchproto://bucket/x.*nosuchproto"):
        resolve_store("nosuchproto://bucket/x")


def test_missing_backend_package_names_the_extra_to_install() -> None:
    code = textwrap.dedent("""
        import sys
        sys.modules["s3fs"] = None  # as if s3fs were not installed
        from distributary.errors import MissingDependencyError
        from distributary.results import resolve_store
        try:
            resolve_store("s3://bucket/prefix")
        except MissingDependencyError as exc:
            print(exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert 'pip install "distributary[s3]"' in out.stdout and "s3://bucket/prefix" in out.stdout, out.stderr
    assert issubclass(MissingDependencyError, ImportError)


SLOW_WRITER = textwrap.dedent("""
    import sys, time
    from distributary.results import resolve_store
    from distributary.serializers import Serializer, register_serializer

    class Slow(Serializer):
        type = "slow-test"
        def dumps(self, obj): return bytes(obj)
        def loads(self, data): return bytes(data)
        def dump(self, obj, file):  # 64 MiB in 1 MiB pieces, slowly: the test kills us in the middle
            for i in range(64):
                file.write(bytes([i]) * 2**20)
                time.sleep(0.02)

    register_serializer("slow-test", Slow)
    print("writing", flush=True)
    resolve_store(sys.argv[1]).write(sys.argv[2], b"", "slow-test")
    print("finished", flush=True)
""")


@pytest.mark.parametrize("overwrite", [False, True], ids=["new-key", "overwrite"])
def test_writer_killed_mid_write_leaves_nothing_readable(tmp_path: Path, overwrite: bool) -> None:
    root = tmp_path / "store"
    store = resolve_store(str(root))
    if overwrite:
        store.write("big", "the old value", "json")
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(root), "big"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not any(p.stat().st_size > 8 * 2**20 for p in root.glob("*/*/big.*.data") if p.exists()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the writer never started writing"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        out, _ = proc.communicate()
    assert "finished" not in out
    if overwrite:
        assert store.load("big") == "the old value"
    else:
        assert store.read_record("big") is None and not store.exists("big")
        assert not list(root.rglob("big.meta.json"))  # only an unreferenced partial data object is left
        with pytest.raises(MissingResult):
            store.load("big")
    store.write("big", "a new value", "json")  # the leftover partial data object is in nobody's way
    assert store.load("big") == "a new value"


def test_importing_results_stays_light() -> None:
    # (fsspec itself imports zstandard and lz4 when they are installed, so they are not checked here.)
    code = ("import sys, distributary.results, distributary.cache_policies, distributary.transactions;"
            "print(sorted(m for m in ('s3fs', 'gcsfs', 'adlfs', 'pyarrow', 'pandas', 'botocore') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
