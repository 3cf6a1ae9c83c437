"""Persisted-result throughput: a ~100 MB Arrow table through `ResultStore.write(..., get_serializer("arrow"))`
and `ResultStore.load`, against raw pyarrow IPC + fsspec on the same file system, in the same run.

    python benchmarks/bench_store_write.py                 # local store
    python benchmarks/bench_store_write.py --s3            # also S3 on a moto server started here
    python benchmarks/bench_store_write.py --mb 100 --repeat 5
    python benchmarks/bench_store_write.py --checksum --repeat 21   # what the XXH3 checksum costs a local write

The store does more than the raw path (XXH3-64 of the data, a JSON record, fresh-name data); the target is a
ratio (store time / raw time) within 1.2x. `--checksum` times the local `ResultStore.write` with its hasher and
with a hasher that does nothing (interleaved, medians), and XXH3 of the same bytes alone: the checksum's cost
is (with - without) / with, target under 10% of the write. Results are printed and saved under
benchmarks/results/.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.ipc

from distributary.results import resolve_store
from distributary.serializers import get_serializer


def make_table(megabytes: int) -> pa.Table:
    rows = megabytes * 2**20 // (8 * 4)
    rng = np.random.default_rng(0)
    return pa.table({"a": rng.random(rows), "b": rng.integers(0, 2**40, rows), "c": rng.random(rows),
                     "d": np.arange(rows, dtype=np.int64)})


def raw_write(fs: fsspec.AbstractFileSystem, path: str, table: pa.Table) -> None:
    with fs.open(path, "wb") as f, pa.ipc.new_stream(f, table.schema) as writer:
        writer.write_table(table)


def raw_read(fs: fsspec.AbstractFileSystem, path: str) -> pa.Table:
    with fs.open(path, "rb") as f:
        return pa.ipc.open_stream(f).read_all()


def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    fn()  # warm up (page cache, allocator, connections)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def bench(label: str, url: str, options: dict[str, Any], table: pa.Table, repeat: int) -> list[dict[str, Any]]:
    store = resolve_store(url, options or None)
    fs, base = store.fs, store.base_path
    arrow = get_serializer("arrow")
    raw_path = f"{base}/raw-{uuid.uuid4().hex}.arrow"
    if store.is_local:
        os.makedirs(base, exist_ok=True)
    rows = []
    pairs = [
        ("write", lambda: raw_write(fs, raw_path, table), lambda: store.write("bench", table, arrow)),
        ("read", lambda: raw_read(fs, raw_path), lambda: store.load("bench")),
    ]
    for op, raw, ours in pairs:
        assert op != "read" or store.load("bench").equals(table)
        # interleave the two so that both see the same machine conditions
        raw_times, store_times = [], []
        for _ in range(repeat):
            raw_times += timed(raw, 1)
            store_times += timed(ours, 1)
        r, s = statistics.median(raw_times), statistics.median(store_times)
        mb = table.nbytes / 2**20
        rows.append({"backend": label, "op": op, "MB": round(mb, 1), "raw_s": round(r, 4), "store_s": round(s, 4),
                     "raw_MBps": round(mb / r), "store_MBps": round(mb / s), "ratio": round(s / r, 3)})
    store.delete("bench")
    fs.rm_file(raw_path)
    return rows


class _NoHash:
    """A hasher that hashes nothing: the write without its checksum, as the baseline of --checksum."""

    def update(self, data: Any) -> None:
        pass

    def hexdigest(self) -> str:
        return "0" * 16


def checksum_cost(table: pa.Table, repeat: int) -> dict[str, Any]:
    import xxhash

    from distributary.results import backends

    arrow = get_serializer("arrow")
    data = arrow.dumps(table)
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        store = resolve_store(str(Path(tmp) / "store"))
        real, overlap = backends.new_hasher, backends.OVERLAP_MIN

        def write(hasher: Any, overlap_min: int = overlap) -> Callable[[], Any]:
            def run() -> None:
                backends.new_hasher, backends.OVERLAP_MIN = hasher, overlap_min
                try:
                    store.write("bench", table, arrow)
                finally:
                    backends.new_hasher, backends.OVERLAP_MIN = real, overlap
            return run

        variants = {"with": write(real), "without": write(_NoHash),
                    "serial": write(real, sys.maxsize),  # hashed before writing, in the writing thread (before)
                    "hash_alone": lambda: xxhash.xxh3_64_digest(data)}
        times: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(repeat):  # interleaved: each sees the same machine conditions
            for name, fn in variants.items():
                times[name] += timed(fn, 1)
    with_s, without_s, serial_s, alone_s = (statistics.median(times[k])
                                            for k in ("with", "without", "serial", "hash_alone"))
    return {"MB": round(len(data) / 2**20, 1), "write_s": round(with_s, 4), "write_without_checksum_s":
            round(without_s, 4), "write_hashing_serially_s": round(serial_s, 4), "hash_alone_s": round(alone_s, 4),
            "cost_of_write": round((with_s - without_s) / with_s, 3),
            "serial_cost_of_write": round((serial_s - without_s) / serial_s, 3),
            "hash_alone_of_write": round(alone_s / with_s, 3),
            "min_s": {k: round(min(v), 4) for k, v in times.items()}}


def start_moto() -> tuple[subprocess.Popen, dict[str, Any]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
            break
        except urllib.error.HTTPError:
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("moto did not start (pip install 'moto[server]' s3fs)") from None
            time.sleep(0.05)
    return proc, {"key": "bench", "secret": "bench", "client_kwargs": {"endpoint_url": url}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=100, help="table size in MiB (default 100)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per measurement (median reported)")
    parser.add_argument("--s3", action="store_true", help="also measure S3 on a local moto server")
    parser.add_argument("--checksum", action="store_true", help="only what the checksum costs a local write")
    args = parser.parse_args()

    table = make_table(args.mb)
    if args.checksum:
        result = checksum_cost(table, args.repeat)
        for k, v in result.items():
            print(f"{k:26s} {v}")
        print("cost_of_write = (write - write without checksum) / write (target < 0.10)")
        out = Path(__file__).parent / "results"
        out.mkdir(exist_ok=True)
        (out / "bench_store_checksum.json").write_text(json.dumps({**result, "repeat": args.repeat,
                                                                   "cpus": os.cpu_count()}, indent=2))
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        rows += bench("local", str(Path(tmp) / "store"), {}, table, args.repeat)
    if args.s3:
        proc, options = start_moto()
        try:
            bucket = f"bench-{uuid.uuid4().hex[:8]}"
            fsspec.filesystem("s3", **options).mkdir(bucket)
            rows += bench("s3 (moto)", f"s3://{bucket}/results", options, table, max(2, args.repeat // 2))
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)

    header = ["backend", "op", "MB", "raw_s", "store_s", "raw_MBps", "store_MBps", "ratio"]
    widths = [max(len(h), *(len(str(r[h])) for r in rows)) for h in header]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for r in rows:
        print("  ".join(str(r[h]).ljust(w) for h, w in zip(header, widths)))
    print("ratio = store time / raw pyarrow+fsspec time (target <= 1.2)")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "bench_store_write.json").write_text(json.dumps({"rows": rows, "mb": args.mb, "repeat": args.repeat,
                                                            "cpus": os.cpu_count()}, indent=2))


if __name__ == "__main__":
    main()
