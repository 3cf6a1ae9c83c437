"""Where a sweep runs its work: one `Backend` per runner spec. A backend starts its cluster once per sweep
(timed separately as start-up), makes fresh distributary runners pointed at it by address, and opens the raw
baseline for one run (`ThreadPoolExecutor`, `ProcessPoolExecutor`, `client.map` + `client.gather`,
`ray.remote` + `ray.get`). The cluster pools also offer the hand-batched forms an experienced user writes for many
small items (`map_chunked`: one cluster task per chunk; Dask's `map_bag`).

It also starts the S3 server of the cache scenarios (moto on a free loopback port, stopped by pid).
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import ClusterConnectionError, ConfigurationError, MissingDependencyError
from .spec import RunnerSpec

RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
RAY_OBJECT_STORE_BYTES = 512 * 2**20


# ---------------------------------------------------------------------------------------------------------------
# Raw baselines: the same work through the runner's own API
# ---------------------------------------------------------------------------------------------------------------
class RawPool:
    """The operations the scenarios need, written the way a user of the raw API would write them."""

    def map(self, fn: Callable, items: list) -> list:
        """Submit fn(x) for every x, then gather every result."""
        raise NotImplementedError

    def map_wait_gather(self, fn: Callable, items: list) -> list:
        """Submit all, wait until all are done (results stay where they were computed), then gather."""
        raise NotImplementedError

    def chain(self, fn: Callable, x: Any, depth: int) -> Any:
        """fn applied `depth` times, each call depending on the previous one."""
        raise NotImplementedError

    def map_reduce(self, fn: Callable, items: list, reduce: Callable[[list], Any]) -> Any:
        """reduce([fn(x) for x in items]) with the reduction running as one more task."""
        raise NotImplementedError

    def call(self, fn: Callable, *args: Any) -> Any:
        """One task: fn(*args)."""
        raise NotImplementedError

    def map_chunked(self, fn: Callable, items: list, chunks: int = 32) -> list:
        """fn over `items` cut into `chunks` consecutive chunks, one task per chunk, results flattened."""
        raise NotImplementedError(f"{type(self).__name__} has no hand-batched baseline")


CHUNKS = 32  # chunks of the hand-batched baselines: a few per worker thread, as a Dask or Ray user would cut


def process_chunk(fn: Callable, chunk: list) -> list:
    """The hand-batched baselines' cluster task: fn over one chunk, in a plain loop."""
    return [fn(x) for x in chunk]


def chunked(items: list, chunks: int) -> list[list]:
    size = max(1, -(-len(items) // chunks))
    return [items[i:i + size] for i in range(0, len(items), size)]


class ExecutorRaw(RawPool):
    """concurrent.futures: submit per item (no chunking), as the thread and process runners do."""

    def __init__(self, pool: cf.Executor):
        self.pool = pool

    def map(self, fn: Callable, items: list) -> list:
        futures = [self.pool.submit(fn, x) for x in items]
        return [f.result() for f in futures]

    def map_wait_gather(self, fn: Callable, items: list) -> list:
        futures = [self.pool.submit(fn, x) for x in items]
        cf.wait(futures)
        return [f.result() for f in futures]

    def chain(self, fn: Callable, x: Any, depth: int) -> Any:
        # concurrent.futures has no dependencies between futures: the next call waits for the previous result.
        for _ in range(depth):
            x = self.pool.submit(fn, x).result()
        return x

    def map_reduce(self, fn: Callable, items: list, reduce: Callable[[list], Any]) -> Any:
        return self.pool.submit(reduce, self.map(fn, items)).result()

    def call(self, fn: Callable, *args: Any) -> Any:
        return self.pool.submit(fn, *args).result()


class DaskRaw(RawPool):
    """`client.map` + `client.gather`; futures passed as arguments are Dask's own dependencies."""

    def __init__(self, client: Any):
        self.client = client

    def map(self, fn: Callable, items: list) -> list:
        return self.client.gather(self.client.map(fn, items, pure=False))

    def map_wait_gather(self, fn: Callable, items: list) -> list:
        from distributed import wait

        futures = self.client.map(fn, items, pure=False)
        wait(futures)
        return self.client.gather(futures)

    def chain(self, fn: Callable, x: Any, depth: int) -> Any:
        for _ in range(depth):
            x = self.client.submit(fn, x, pure=False)
        return x.result() if depth else x

    def map_reduce(self, fn: Callable, items: list, reduce: Callable[[list], Any]) -> Any:
        futures = self.client.map(fn, items, pure=False)
        return self.client.submit(reduce, futures, pure=False).result()

    def call(self, fn: Callable, *args: Any) -> Any:
        return self.client.submit(fn, *args, pure=False).result()

    def map_chunked(self, fn: Callable, items: list, chunks: int = CHUNKS) -> list:
        parts = chunked(items, chunks)
        futures = self.client.map(process_chunk, [fn] * len(parts), parts, pure=False)
        return [y for part in self.client.gather(futures) for y in part]

    def map_bag(self, fn: Callable, items: list, chunks: int = CHUNKS) -> list:
        """`dask.bag.from_sequence(items, npartitions=chunks).map(fn)`, computed on this client."""
        import dask.bag as db

        return list(self.client.compute(db.from_sequence(items, npartitions=chunks).map(fn)).result())


def _call_with_list(reduce: Callable[[list], Any], *values: Any) -> Any:
    return reduce(list(values))


class RayRaw(RawPool):
    """`ray.remote` + `ray.get`; object refs passed as top-level arguments are Ray's own dependencies."""

    def __init__(self) -> None:
        import ray

        self.ray = ray
        self._remote: dict[Callable, Any] = {}

    def _r(self, fn: Callable) -> Any:
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._remote[fn] = self.ray.remote(fn)
        return remote

    def map(self, fn: Callable, items: list) -> list:
        r = self._r(fn)
        return self.ray.get([r.remote(x) for x in items])

    def map_wait_gather(self, fn: Callable, items: list) -> list:
        r = self._r(fn)
        refs = [r.remote(x) for x in items]
        self.ray.wait(refs, num_returns=len(refs), fetch_local=False)
        return self.ray.get(refs)

    def chain(self, fn: Callable, x: Any, depth: int) -> Any:
        r = self._r(fn)
        for _ in range(depth):
            x = r.remote(x)
        return self.ray.get(x) if depth else x

    def map_reduce(self, fn: Callable, items: list, reduce: Callable[[list], Any]) -> Any:
        r = self._r(fn)
        refs = [r.remote(x) for x in items]
        return self.ray.get(self._r(_call_with_list).remote(reduce, *refs))

    def call(self, fn: Callable, *args: Any) -> Any:
        return self.ray.get(self._r(fn).remote(*args))

    def map_chunked(self, fn: Callable, items: list, chunks: int = CHUNKS) -> list:
        r = self._r(process_chunk)
        return [y for part in self.ray.get([r.remote(fn, c) for c in chunked(items, chunks)]) for y in part]


# ---------------------------------------------------------------------------------------------------------------
# Backends
# ---------------------------------------------------------------------------------------------------------------
class Backend:
    """One runner spec during a sweep."""

    def __init__(self, spec: RunnerSpec):
        self.spec = spec
        self.startup_s: float | None = None
        self.address: str | None = None

    @property
    def parallelism(self) -> int:
        """Tasks of CPU-bound Python that can run at once."""
        return 1

    def start(self) -> None:
        """Start (or connect to) the cluster; `startup_s` is how long that took."""

    def close(self) -> None:
        """Stop what `start` started (never a cluster given by address)."""

    def make_runner(self) -> Any:
        """A fresh, unstarted distributary task runner pointed at this backend."""
        raise NotImplementedError

    @contextmanager
    def raw(self) -> Iterator[RawPool]:
        """The raw baseline for one run, set up and torn down inside the timed region like a flow's runner."""
        raise NotImplementedError
        yield  # pragma: no cover

    def info(self) -> dict[str, Any]:
        return {"runner": self.spec.label, "kind": self.spec.kind, "startup_s": self.startup_s,
                "address": self.address, "parallelism": self.parallelism, "options": self.spec.options}


def default_thread_workers() -> int:
    return min(32, (os.cpu_count() or 1) + 4)


class ThreadsBackend(Backend):
    def __init__(self, spec: RunnerSpec):
        super().__init__(spec)
        self.max_workers = int(spec.options.get("max_workers") or default_thread_workers())

    def make_runner(self) -> Any:
        from ..runners.thread import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=self.max_workers)

    @contextmanager
    def raw(self) -> Iterator[RawPool]:
        with cf.ThreadPoolExecutor(max_workers=self.max_workers) as pool:
            yield ExecutorRaw(pool)


class ProcessesBackend(Backend):
    def __init__(self, spec: RunnerSpec):
        super().__init__(spec)
        self.max_workers = int(spec.options.get("max_workers") or os.cpu_count() or 1)
        self.mp_context = spec.options.get("mp_context")

    @property
    def parallelism(self) -> int:
        return self.max_workers

    def make_runner(self) -> Any:
        from ..runners.process import ProcessPoolTaskRunner

        return ProcessPoolTaskRunner(max_workers=self.max_workers, mp_context=self.mp_context)

    @contextmanager
    def raw(self) -> Iterator[RawPool]:
        method = self.mp_context or ("forkserver" if "forkserver" in multiprocessing.get_all_start_methods()
                                     else "spawn")
        with cf.ProcessPoolExecutor(self.max_workers, mp_context=multiprocessing.get_context(method)) as pool:
            yield ExecutorRaw(pool)


class DaskBackend(Backend):
    """A `distributed.LocalCluster` started once (on 127.0.0.1, dashboards on free ports), or the scheduler at
    `address`. Runners and raw clients connect to it by address."""

    def __init__(self, spec: RunnerSpec):
        super().__init__(spec)
        self.cluster: Any = None
        opts = {k: v for k, v in spec.options.items() if k != "address"}
        if spec.address is None:
            opts.setdefault("n_workers", os.cpu_count() or 1)
            opts.setdefault("threads_per_worker", 1)
            opts.setdefault("processes", True)
        self.cluster_kwargs = opts
        self._workers = 0

    @property
    def parallelism(self) -> int:
        return max(1, self._workers)

    def start(self) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:
            raise MissingDependencyError("The dask runner of `distributary bench`", "dask", exc) from exc
        t0 = time.perf_counter()
        if self.spec.address is None:
            kwargs = {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0",
                      "worker_dashboard_address": "127.0.0.1:0", **self.cluster_kwargs}
            try:
                self.cluster = LocalCluster(**kwargs)
            except TypeError as exc:
                raise ConfigurationError(f"Runner {self.spec.label!r}: LocalCluster rejected the options "
                                         f"({exc}).") from exc
            self.address = self.cluster.scheduler_address
            expected = int(kwargs.get("n_workers") or 1)
        else:
            self.address = self.spec.address
            expected = 1
        try:
            with Client(self.address, timeout="30s") as client:
                client.wait_for_workers(expected, timeout=120)
                info = client.scheduler_info()
                workers = info.get("workers", {})
                procs = len(workers)
                threads = sum(w.get("nthreads", 1) for w in workers.values())
        except OSError as exc:
            self.close()
            raise ClusterConnectionError(f"Could not reach the Dask scheduler at {self.address}: {exc}") from exc
        self._workers = procs if self.cluster_kwargs.get("processes", True) else min(procs, threads)
        self.startup_s = time.perf_counter() - t0

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None

    def make_runner(self) -> Any:
        from ..runners import load_runner_class

        cls: Any = load_runner_class("dask")
        return cls(address=self.address)

    @contextmanager
    def raw(self) -> Iterator[RawPool]:
        from distributed import Client

        with Client(self.address) as client:
            yield DaskRaw(client)


class RayBackend(Backend):
    """Ray started once in this process with `ray.init` (loopback only, 512 MiB object store, no dashboard),
    or connected to the cluster at `address`. Runners use the same connection."""

    def __init__(self, spec: RunnerSpec):
        super().__init__(spec)
        self.init_kwargs = {k: v for k, v in spec.options.items() if k != "address"}
        self._we_started = False
        self._cpus = 1

    @property
    def parallelism(self) -> int:
        return self._cpus

    def start(self) -> None:
        for key, value in RAY_ENV.items():
            os.environ.setdefault(key, value)
        try:
            import ray
        except ImportError as exc:
            raise MissingDependencyError("The ray runner of `distributary bench`", "ray", exc) from exc
        if ray.is_initialized():
            # This process is already connected (e.g. a test session's Ray): usable when given by its address.
            current = ray.get_runtime_context().gcs_address
            if self.spec.address is None or self.spec.address.rpartition(":")[2] != current.rpartition(":")[2]:
                raise ClusterConnectionError(
                    f"Ray is already initialised in this process (cluster {current}); give that cluster as "
                    f"ray(address={current}) or run the benchmark in a fresh process (one Ray runner per sweep).")
            self.startup_s, self.address = 0.0, current
            self._cpus = int(ray.cluster_resources().get("CPU", 1))
            return
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "configure_logging": False, **self.init_kwargs}
        if self.spec.address is None:
            kwargs.setdefault("num_cpus", os.cpu_count() or 1)
            kwargs.setdefault("object_store_memory", RAY_OBJECT_STORE_BYTES)
        else:
            kwargs["address"] = self.spec.address
            kwargs.pop("include_dashboard")
        t0 = time.perf_counter()
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError) as exc:
            raise ClusterConnectionError(f"Could not start or reach Ray ({self.spec.label}): {exc}") from exc
        except TypeError as exc:
            raise ConfigurationError(f"Runner {self.spec.label!r}: ray.init rejected the options ({exc}).") from exc
        self._we_started = True
        self.startup_s = time.perf_counter() - t0
        self.address = ray.get_runtime_context().gcs_address
        self._cpus = int(ray.cluster_resources().get("CPU", 1))

    def close(self) -> None:
        if self._we_started:
            import ray

            ray.shutdown()  # stops the processes this ray.init started (never `ray stop`)
            self._we_started = False

    def make_runner(self) -> Any:
        from ..runners import load_runner_class

        # Ray is initialised in this process: the runner joins the same cluster and reuses the connection.
        cls: Any = load_runner_class("ray")
        return cls(address=self.address)

    @contextmanager
    def raw(self) -> Iterator[RawPool]:
        yield RayRaw()


BACKENDS: dict[str, type[Backend]] = {"threads": ThreadsBackend, "processes": ProcessesBackend,
                                      "dask": DaskBackend, "ray": RayBackend}


def make_backend(spec: RunnerSpec) -> Backend:
    return BACKENDS[spec.kind](spec)


# ---------------------------------------------------------------------------------------------------------------
# S3 on loopback for the cache and persisted-result scenarios
# ---------------------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    """`python -m moto.server` on a free 127.0.0.1 port in its own session; `stop()` kills that session."""

    def __init__(self) -> None:
        try:
            import moto.server  # noqa: F401
            import s3fs  # noqa: F401
        except ImportError as exc:
            raise MissingDependencyError("The S3 scenarios of `distributary bench` (moto server + s3fs)", "test",
                                         exc) from exc
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile()  # noqa: SIM115  the server's log, closed when it stops
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.storage_options = {"key": "bench", "secret": "bench-secret", "client_kwargs": {"endpoint_url": self.url}}
        try:
            self._wait()
        except BaseException:  # not up in time, or interrupted while starting: do not leave it behind
            self.stop()
            raise

    def _wait(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise ClusterConnectionError(f"moto server exited with {self.proc.returncode}: "
                                             f"{self.log.read()[-2000:].decode(errors='replace')}")
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1).close()
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise ClusterConnectionError(f"moto server did not answer on {self.url} within {timeout:.0f} s.")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


__all__ = ["Backend", "RawPool", "make_backend", "MotoServer", "RAY_ENV", "default_thread_workers"]
