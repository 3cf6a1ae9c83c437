"""The built-in scaling scenarios of `distributary bench`. Each one does the same work twice in the same run:
through distributary (a flow on the runner under test) and through the runner's raw API (the baseline).

1. `fanout`      N trivial tasks (x + 1), mapped then gathered. On Dask and Ray it has two more baselines, the
                 hand-batched forms (`raw_batched`: one cluster task per chunk of 32 chunks; `raw_bag`: dask.bag).
2. `fanout_1mb`  N tasks returning 1 MiB each; all are waited for (results stay where they were computed), then
                 gathered.
3. `chain`       N tasks, each depending on the previous one (passed as a future).
   `map_reduce`  N trivial tasks, then one task summing their results (the futures passed as its argument).
4. `cache_local`, `cache_s3`  the same fan-out with `cache_policy=INPUTS`, run once to fill the cache, then timed
                 when every task run is a cache hit; the baseline checks and reads the same objects with fsspec
                 (`exists` + read + unpickle) in the raw pool.
5. `arrow_local`, `arrow_s3`  one task builds an Arrow table of N MiB and persists it through the result store
                 (arrow serializer); the driver reads it back. Baseline: pyarrow IPC to and from fsspec.

The task functions live here, at module level, so worker processes (process pool, Dask, Ray) import them.
"""
from __future__ import annotations

import json
import os
import pickle
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import flow, task
from ..cache_policies import INPUTS, NO_CACHE
from ..futures import wait
from .backends import Backend

MIB = 2**20


# ---------------------------------------------------------------------------------------------------------------
# Task functions (plain functions for the raw baselines; tasks of the same functions for distributary)
# ---------------------------------------------------------------------------------------------------------------
def inc(x: int) -> int:
    return x + 1


def megabyte(x: int) -> bytes:
    return bytes(MIB)


def add_all(values: list[int]) -> int:
    return sum(values)


_FILESYSTEMS: dict[tuple[str, str], Any] = {}


def _fs(protocol: str, options_json: str) -> Any:
    fs = _FILESYSTEMS.get((protocol, options_json))
    if fs is None:
        import fsspec

        fs = _FILESYSTEMS[(protocol, options_json)] = fsspec.filesystem(protocol, **json.loads(options_json))
    return fs


def exists_and_read(item: tuple[str, str, str]) -> Any:
    """Raw cache hit: does the object exist? Then read and unpickle it."""
    protocol, options_json, path = item
    fs = _fs(protocol, options_json)
    if not fs.exists(path):
        raise FileNotFoundError(path)
    return pickle.loads(fs.cat_file(path))


def make_table(mib: int) -> Any:
    """An Arrow table of about `mib` MiB: four float64 columns of random numbers."""
    import numpy as np
    import pyarrow as pa

    rows = max(1, mib * MIB // 32)
    rng = np.random.default_rng(mib)
    return pa.table({f"c{i}": rng.random(rows) for i in range(4)})


def raw_write_table(mib: int, protocol: str, options_json: str, path: str) -> str:
    """Raw persisted result: build the table and write it as Arrow IPC straight to fsspec."""
    import pyarrow as pa

    table = make_table(mib)
    with _fs(protocol, options_json).open(path, "wb") as f, pa.ipc.new_stream(f, table.schema) as writer:
        writer.write_table(table)
    return path


def raw_read_table(protocol: str, options_json: str, path: str) -> Any:
    import pyarrow as pa

    with _fs(protocol, options_json).open(path, "rb") as f:
        return pa.ipc.open_stream(f).read_all()


inc_task = task(inc)
megabyte_task = task(megabyte)
add_all_task = task(add_all)
make_table_task = task(make_table, persist_result=True, result_serializer="arrow", cache_policy=NO_CACHE,
                       cache_result_in_memory=False)


# ---------------------------------------------------------------------------------------------------------------
# Flows
# ---------------------------------------------------------------------------------------------------------------
@flow(validate_parameters=False)
def fanout_flow(n: int) -> int:
    return len(inc_task.map(range(n)).result())


@flow(validate_parameters=False)
def fanout_1mb_flow(n: int) -> int:
    futures = megabyte_task.map(range(n))
    wait(futures)
    return sum(len(b) for b in futures.result())


@flow(validate_parameters=False)
def chain_flow(n: int) -> int:
    future = inc_task.submit(0)
    for _ in range(n - 1):
        future = inc_task.submit(future)
    return future.result()


@flow(validate_parameters=False)
def map_reduce_flow(n: int) -> int:
    # list(...): resolve.py walks exact lists only, so a FutureList argument is not resolved (engine bug, reported).
    return add_all_task.submit(list(inc_task.map(range(n)))).result()


@flow(validate_parameters=False)
def cached_fanout_flow(n: int, store: Any) -> int:
    cached = inc_task.with_options(cache_policy=INPUTS, result_storage=store)
    return len(cached.map(range(n)).result())


@flow(validate_parameters=False)
def arrow_flow(mib: int, store: Any) -> int:
    table = make_table_task.with_options(result_storage=store).submit(mib).result()
    return table.num_rows


# ---------------------------------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Context:
    """What scenarios share during one sweep: a scratch folder and, when needed, the S3 server."""

    workdir: Path
    s3_options: dict[str, Any] | None = None
    bucket: str | None = None
    arrow_mib: int = 100
    _prepared: dict[Any, Any] = field(default_factory=dict)

    def store_url(self, where: str, name: str) -> tuple[str, str, dict[str, Any]]:
        """(url, fsspec protocol, storage options) of a fresh location named `name` on `where` (local | s3)."""
        if where == "s3":
            if self.s3_options is None or self.bucket is None:
                raise RuntimeError("The S3 scenarios need the S3 server; it was not started.")
            return f"s3://{self.bucket}/{name}", "s3", self.s3_options
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return str(path), "file", {}


@dataclass
class Scenario:
    """One scenario: `ours(ctx, backend, n)` and `raw(...)` each return the zero-argument callable that is timed.
    `max_n` caps N per runner kind (sizes above it are not run); `fixed_sizes` replaces the sweep's sizes.
    `extra_raw` are more baselines by impl name: (the runner kinds they apply to, the maker like `raw`)."""

    name: str
    title: str
    ours: Callable[[Context, Backend, int], Callable[[], Any]]
    raw: Callable[[Context, Backend, int], Callable[[], Any]] | None
    max_n: dict[str, int]
    needs_s3: bool = False
    fixed_sizes: Callable[[Context], list[int]] | None = None
    unit: str = "tasks"
    extra_raw: dict[str, tuple[frozenset[str], Callable[[Context, Backend, int], Callable[[], Any]]]] = \
        field(default_factory=dict)

    def impls(self, kind: str) -> list[tuple[str, Callable[[Context, Backend, int], Callable[[], Any]]]]:
        """(impl name, maker) of every implementation run for a runner kind: the baselines, then ours."""
        out: list[tuple[str, Callable[[Context, Backend, int], Callable[[], Any]]]] = []
        if self.raw is not None:
            out.append(("raw", self.raw))
        out += [(name, make) for name, (kinds, make) in self.extra_raw.items() if kind in kinds]
        out.append(("distributary", self.ours))
        return out

    def sizes(self, ctx: Context, kind: str, sizes: list[int], caps: bool = True) -> list[int]:
        if self.fixed_sizes is not None:
            return self.fixed_sizes(ctx)
        limit = self.max_n.get(kind, self.max_n.get("*")) if caps else None
        return [n for n in sizes if limit is None or n <= limit]


def _on(flow_obj: Any, backend: Backend) -> Any:
    return flow_obj.with_options(task_runner=backend.make_runner())


def _raw_only(raw_run: Callable[[Any, int], Any]) -> Callable[[Context, Backend, int], Callable[[], Any]]:
    """A baseline maker: `raw_run(pool, n)` in a fresh raw pool of the backend."""
    def raw(ctx: Context, backend: Backend, n: int) -> Callable[[], Any]:
        def run() -> Any:
            with backend.raw() as pool:
                return raw_run(pool, n)
        return run

    return raw


def _simple(flow_obj: Any, raw_run: Callable[[Any, int], Any]) -> tuple[Callable, Callable]:
    def ours(ctx: Context, backend: Backend, n: int) -> Callable[[], Any]:
        f = _on(flow_obj, backend)
        return lambda: f(n)

    return ours, _raw_only(raw_run)


CLUSTERS = frozenset({"dask", "ray"})
HAND_BATCHED = {"raw_batched": (CLUSTERS, _raw_only(lambda p, n: len(p.map_chunked(inc, list(range(n)))))),
                "raw_bag": (frozenset({"dask"}), _raw_only(lambda p, n: len(p.map_bag(inc, list(range(n))))))}


def _cache(where: str) -> tuple[Callable, Callable]:
    def store_for(ctx: Context, backend: Backend, n: int) -> tuple[Any, list[tuple[str, str, str]]]:
        key = ("cache", where, n)
        if key not in ctx._prepared:
            from ..results import ResultRecord, resolve_store

            url, protocol, options = ctx.store_url(where, f"cache-{n}-{uuid.uuid4().hex[:6]}")
            store = resolve_store(url, storage_options=options or None)
            _on(cached_fanout_flow, backend)(n, store)  # fill the cache (not timed)
            fs = store.fs
            records = sorted(p for p in fs.find(store.base_path) if p.endswith(".meta.json"))
            if len(records) != n:
                raise RuntimeError(f"The cache run wrote {len(records)} results for {n} tasks in {store.url}.")
            # The raw side reads the same pickled values as plain objects, one per result (the store keeps each
            # small value inside its record, so a hit is one read on both sides).
            raw_url, _, _ = ctx.store_url(where, f"cache-raw-{n}-{uuid.uuid4().hex[:6]}")
            raw_base = raw_url.split("://", 1)[-1]
            paths = []
            for i, path in enumerate(records):
                record = ResultRecord.from_json(fs.cat_file(path))
                target = f"{raw_base}/{i}"
                data = record.inline
                if data is None:  # not inline: the record's data file
                    data_path = store.data_path(record)
                    assert data_path is not None
                    data = store._backend.read_data(data_path)
                fs.pipe_file(target, data)
                paths.append(target)
            opts = json.dumps(options, sort_keys=True)
            ctx._prepared[key] = (store, [(protocol, opts, p) for p in paths])
        return ctx._prepared[key]

    def ours(ctx: Context, backend: Backend, n: int) -> Callable[[], Any]:
        store, _ = store_for(ctx, backend, n)
        f = _on(cached_fanout_flow, backend)
        return lambda: f(n, store)

    def raw(ctx: Context, backend: Backend, n: int) -> Callable[[], Any]:
        _, items = store_for(ctx, backend, n)

        def run() -> Any:
            with backend.raw() as pool:
                return len(pool.map(exists_and_read, items))
        return run

    return ours, raw


def _empty(fs: Any, folder: str) -> None:
    """Delete what a run left in `folder` (100 MiB per run adds up), keeping the folder."""
    try:
        entries = fs.ls(folder, detail=False)
    except FileNotFoundError:
        return
    for entry in entries:
        fs.rm(entry, recursive=True)
    fs.invalidate_cache()


def _arrow(where: str) -> tuple[Callable, Callable]:
    def ours(ctx: Context, backend: Backend, n: int) -> Callable[[], Any]:
        from ..results import resolve_store

        url, _, options = ctx.store_url(where, f"arrow-{uuid.uuid4().hex[:6]}")
        store = resolve_store(url, storage_options=options or None)
        f = _on(arrow_flow, backend)

        def run() -> Any:
            return f(n, store)
        run.cleanup = lambda: _empty(store.fs, store.base_path)  # type: ignore[attr-defined]
        return run

    def raw(ctx: Context, backend: Backend, n: int) -> Callable[[], Any]:
        url, protocol, options = ctx.store_url(where, f"arrow-raw-{uuid.uuid4().hex[:6]}")
        opts = json.dumps(options, sort_keys=True)
        path = url.split("://", 1)[-1] + "/table.arrows"

        def run() -> Any:
            with backend.raw() as pool:
                written = pool.call(raw_write_table, n, protocol, opts, path)
            return raw_read_table(protocol, opts, written).num_rows
        run.cleanup = lambda: _empty(_fs(protocol, opts), path.rsplit("/", 1)[0])  # type: ignore[attr-defined]
        return run

    return ours, raw


def _build() -> dict[str, Scenario]:
    big = {"threads": 10**6, "*": 10**5}
    out = [
        Scenario("fanout", "fan-out of N trivial tasks", *_simple(fanout_flow, lambda p, n: len(p.map(inc, range(n)))),
                 max_n=big, extra_raw=HAND_BATCHED),
        Scenario("fanout_1mb", "fan-out of N tasks returning 1 MiB each",
                 *_simple(fanout_1mb_flow, lambda p, n: sum(len(b) for b in p.map_wait_gather(megabyte, range(n)))),
                 max_n={"*": 10**3}),
        Scenario("chain", "chain of N dependent tasks", *_simple(chain_flow, lambda p, n: p.chain(inc, 0, n)),
                 max_n={"*": 10**4}),
        Scenario("map_reduce", "map of N tasks, then one reduce",
                 *_simple(map_reduce_flow, lambda p, n: p.map_reduce(inc, list(range(n)), add_all)),
                 max_n={"*": 10**4}),
        Scenario("cache_local", "N cache hits (INPUTS), local store", *_cache("local"), max_n={"*": 10**4}),
        Scenario("cache_s3", "N cache hits (INPUTS), S3 store (moto)", *_cache("s3"), max_n={"*": 10**3},
                 needs_s3=True),
        Scenario("arrow_local", "N MiB Arrow table persisted and read back, local store", *_arrow("local"),
                 max_n={}, fixed_sizes=lambda ctx: [ctx.arrow_mib], unit="MiB"),
        Scenario("arrow_s3", "N MiB Arrow table persisted and read back, S3 store (moto)", *_arrow("s3"),
                 max_n={}, needs_s3=True, fixed_sizes=lambda ctx: [ctx.arrow_mib], unit="MiB"),
    ]
    return {s.name: s for s in out}


SCENARIOS: dict[str, Scenario] = _build()
SWEEP_SCENARIOS = ("fanout", "fanout_1mb", "chain", "map_reduce", "cache_local", "cache_s3")


def user_flow_scenario(name: str, flow_obj: Any, size_param: str, params: dict[str, Any]) -> Scenario:
    """A scenario running the user's flow with `size_param=N` (plus fixed `params`) on each runner. It has no
    raw baseline: its figures are wall times of whole flow runs."""

    def ours(ctx: Context, backend: Backend, n: int) -> Callable[[], Any]:
        f = _on(flow_obj, backend)
        kwargs = {**params, size_param: n}
        return lambda: f(**kwargs)

    return Scenario(name, f"user flow {name} ({size_param}=N)", ours, None, max_n={}, unit=size_param)


def scenario_names() -> list[str]:
    return list(SCENARIOS)


def env_defaults() -> None:
    """Quiet logs for benchmark runs (flow runs log at INFO by default)."""
    os.environ.setdefault("DISTRIBUTARY_LOGGING_LEVEL", "WARNING")


__all__ = ["SCENARIOS", "Scenario", "Context", "user_flow_scenario", "scenario_names", "inc", "megabyte",
           "add_all", "make_table"]
