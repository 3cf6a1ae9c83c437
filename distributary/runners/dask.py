"""`DaskTaskRunner`: task runs execute on a Dask cluster (a LocalCluster started per flow run, an existing
scheduler, or any cluster manager), mirroring prefect-dask. Workers need distributary installed.

    @flow(task_runner=DaskTaskRunner(address="tcp://127.0.0.1:8786"))

`.map()` packs many task runs into one Dask task (see `runners.remote` for when; `batch_size=1` turns it off).
Values stay on the workers and move worker to worker; the driver gets one when `.result()` asks.
A worker killed mid-run: Dask would re-run its task elsewhere; each batch marks its start in the scheduler's
metadata, so a re-run after a death hands the decision back to the driver (retry the run or end it Crashed).
A batch's summary (states, no values) reaches the driver as an event, so a run costs one Dask task. A run given
the future of an unfinished run is submitted at once with that run's Dask future as a dependency, so a chain
moves from worker to worker through the scheduler alone (see `remote/backend.py`, linking); if the upstream
comes back lost, the linked run does not run and the driver sends it again once the upstream has settled.
"""
from __future__ import annotations

import asyncio
import contextlib
import importlib
import pickle
import threading
from collections.abc import Iterator
from typing import Any

import cloudpickle

from ..context import flow_run_ctx
from ..engine.drivers import run_coro_sync
from ..errors import ClusterConnectionError, ConfigurationError, DistributaryError, MissingDependencyError
from ..logging import engine_logger
from ._sniff import HTTP, SILENT, sniff
from .remote import Batch, BatchResult, BatchSummary, RemoteTaskRunner, run_batch, telemetry_sender

try:
    import distributed
    from distributed import get_worker
    from distributed.utils import sync
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingDependencyError("The 'dask' task runner (DaskTaskRunner)", "dask", exc) from exc

TOPIC = "distributary-telemetry"  # one event topic for every runner: the scheduler keeps a bounded log per topic
SUMMARIES = "distributary-summaries"  # event topic: (runner id, batch id, BatchSummary) pickled, per batch
_META = "distributary-batches"    # scheduler metadata: [_META, runner id, batch key] -> [STARTED, worker] | DONE
STARTED, DONE = 1, 2
_ATTEMPT_HANDLER = "distributary_start_attempt"  # scheduler handler installed by the driver (one request per run)
_LOCAL_DEFAULTS = {"processes": True, "host": "127.0.0.1", "dashboard_address": "127.0.0.1:0",
                   "worker_dashboard_address": "127.0.0.1:0"}


# ---------------------------------------------------------------------------------------------------------------
# Worker side
# ---------------------------------------------------------------------------------------------------------------
def _task_payload(payload: bytes) -> bytes:
    """The pickled task, as a computed (not scattered) key: if its worker dies, Dask can make it again."""
    return payload


def _dumps(obj: Any) -> bytes:
    try:
        return pickle.dumps(obj, protocol=5)
    except Exception:
        return cloudpickle.dumps(obj, protocol=5)


def _run_on_worker(task_payload: bytes, batch_payload: bytes, runner_id: str, batch_id: str, one_trip: bool,
                   early: bool, *upstreams: BatchResult) -> BatchResult:
    worker = get_worker()
    key = worker.get_current_task()
    died, again = _earlier_attempt(worker, runner_id, key, one_trip)
    if died is not None:
        result = BatchResult.lost_batch(batch_id, f"Dask re-ran the batch after the worker running it ({died}) "
                                                  f"died", died)
    else:
        telemetry_sender().set_transport(lambda channel, data: worker.log_event(TOPIC, data))
        result = run_batch(task_payload, batch_payload, upstreams, worker=worker.address, defer_lost=early)
        _mark_done(worker, runner_id, key)
    # The summary goes to the driver as an event: it arrives before the task's completion (the worker sends both
    # on its one stream to the scheduler, which forwards both on its one stream to the client), so a run costs one
    # Dask task and the values stay on the worker.
    worker.log_event(SUMMARIES, _dumps((runner_id, batch_id, result.take_summary(), again)))
    return result


def _earlier_attempt(worker: Any, runner_id: str, key: Any, one_trip: bool = False) -> tuple[str | None, bool]:
    """Mark this batch started (by this worker) in the scheduler's metadata; return (the address of the worker
    of an earlier attempt that had started and not finished, whether an earlier attempt had finished). Dask only
    re-runs a started task when its worker died. DONE means a recomputation of lost values, which runs normally
    (the driver is told, in case the first outcome never reached it).

    The mark must be on the scheduler before the run starts (a run may kill its worker at once), so this waits
    for the scheduler. With `one_trip` (the driver installed `_ATTEMPT_HANDLER` on the scheduler) the check and
    the mark are one request; otherwise two (read, then write)."""
    path = [_META, runner_id, str(key)]

    async def check_and_mark() -> Any:
        if one_trip:
            try:
                return await getattr(worker.scheduler, _ATTEMPT_HANDLER)(keys=path, worker=worker.address)
            except Exception as exc:  # a scheduler restarted since without the handler: the two requests
                engine_logger("runners").debug("One-request attempt check failed (%r); using two", exc)
        before = await worker.scheduler.get_metadata(keys=path, default=None)
        if before is None:
            await worker.scheduler.set_metadata(keys=path, value=[STARTED, worker.address])
        return before

    before = sync(worker.loop, check_and_mark)
    if isinstance(before, (list, tuple)) and before and before[0] == STARTED:
        return (str(before[1]) if len(before) > 1 else "a worker"), False
    return None, before == DONE


def _install_attempt_handler(dask_scheduler: Any) -> bool:
    """Run on the scheduler (`client.run_on_scheduler`): a handler that reads a batch's attempt mark and sets
    it to STARTED if there was none, as one request (the worker's check before each run). Idempotent."""
    if _ATTEMPT_HANDLER not in dask_scheduler.handlers:
        def distributary_start_attempt(keys: list[str], worker: str) -> Any:
            before = dask_scheduler.get_metadata(keys=keys, default=None)
            if before is None:
                dask_scheduler.set_metadata(keys=keys, value=[STARTED, worker])
            return before

        dask_scheduler.handlers[_ATTEMPT_HANDLER] = distributary_start_attempt
    return True


def _mark_done(worker: Any, runner_id: str, key: Any) -> None:
    """Mark the batch DONE without waiting (it reaches the scheduler with the task's result, within ~1 ms): a
    later re-run is then Dask recomputing values lost with a worker, which must run normally."""
    path = [_META, runner_id, str(key)]

    async def mark() -> None:
        try:
            await worker.scheduler.set_metadata(keys=path, value=DONE)
        except Exception as exc:  # the batch's outcome stands; only a later recomputation would be refused
            engine_logger("runners").warning("Could not mark Dask batch %s done: %r", key, exc)

    worker.loop.add_callback(mark)


# ---------------------------------------------------------------------------------------------------------------
# Driver side
# ---------------------------------------------------------------------------------------------------------------
def _load_class(spec: Any) -> type:
    if not isinstance(spec, str):
        return spec
    module, sep, name = spec.partition(":")
    if not sep:
        module, _, name = spec.rpartition(".")
    if not module:
        raise ConfigurationError(f"cluster_class {spec!r} must be a class or a dotted path like "
                                 f"'distributed.LocalCluster' or 'dask_jobqueue:SLURMCluster'.")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"cluster_class {spec!r} could not be imported ({exc!r}); install the package "
                                 f"that provides it or fix the path.") from exc


def _check_scheduler(address: str, timeout: float, security: Any) -> None:
    """Fail within `timeout` unless a Dask scheduler completes the Dask handshake at `address`.

    `distributed.Client` gives up on an address where nothing listens, but once a TCP connection is accepted it
    waits for the handshake for ever (a dashboard, another web server, a socket that never answers). The check
    uses Dask's own `connect` (so TLS and other schemes work as the client would) under a hard deadline."""
    from distributed.comm import connect
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        scheme, loc = parse_address(address)
    except ValueError as exc:
        raise ConfigurationError(f"DaskTaskRunner: {address!r} is not a Dask scheduler address ({exc}); use "
                                 f"'tcp://host:8786'.") from exc
    if scheme not in ("tcp", "tls"):
        return
    args = security.get_connection_args("client") if hasattr(security, "get_connection_args") else {}
    sniff_time = min(2.0, timeout / 4)

    async def handshake() -> None:
        comm = await asyncio.wait_for(connect(address, timeout=timeout - sniff_time, **args),
                                      timeout - sniff_time)
        await comm.close()

    try:
        run_coro_sync(handshake())
        return
    except (asyncio.TimeoutError, TimeoutError):
        pass
    except OSError as exc:  # nothing listens: Client would say the same, but only after its own retries
        raise ClusterConnectionError(
            f"Could not connect to the Dask scheduler at {address} within {timeout} s ({exc}). Check that it runs "
            f"and the address is right, or leave address unset to start a LocalCluster for each flow run.") from exc
    host, port = parse_host_port(loc, 8786)
    try:
        what = sniff(host, port, sniff_time) if scheme == "tcp" else SILENT
    except OSError:
        what = SILENT
    ports = "8787 is the dashboard port; the scheduler listens on 8786" if port == 8787 else (
        "the scheduler listens on 8786 by default, its dashboard (HTTP) on 8787; `dask scheduler` prints both")
    if what == HTTP:
        why = f"it answers HTTP, not the Dask protocol: a dashboard or another web server ({ports})"
    else:
        why = (f"it accepts connections but did not answer the Dask handshake within {timeout} s: it is not a "
               f"Dask scheduler, or the scheduler is stuck ({ports})")
    raise ClusterConnectionError(f"Could not connect to the Dask scheduler at {address}: {why}. Use the "
                                 f"scheduler's address (tcp://host:8786), or leave address unset to start a "
                                 f"LocalCluster for each flow run.")


class DaskTaskRunner(RemoteTaskRunner):
    """Runs task runs on Dask. With no arguments, each flow run starts a `distributed.LocalCluster` (worker
    processes, on 127.0.0.1) and closes it at the end. `address` uses a running scheduler and never shuts it
    down; `cluster` uses a cluster object you manage; `cluster_class` (a class or a dotted path) with
    `cluster_kwargs` starts any cluster manager; `adapt_kwargs` (e.g. `{"minimum": 1, "maximum": 4}`) makes it
    adaptive. `client_kwargs` go to `distributed.Client`. `batch_size` sets how many task runs of a `.map()` share
    one Dask task (None: adaptive, 1: no packing). Connecting gives up after `connect_timeout` seconds."""

    name = "dask"
    _backend_links_unfinished = True  # a run given an unfinished future is submitted at once, as a Dask dependency

    def __init__(self, cluster: Any = None, address: str | None = None, cluster_class: Any = None,
                 cluster_kwargs: dict[str, Any] | None = None, adapt_kwargs: dict[str, Any] | None = None,
                 client_kwargs: dict[str, Any] | None = None, batch_size: int | None = None, *,
                 max_in_flight: int | None = None, connect_timeout: float = 15.0):
        super().__init__(batch_size=batch_size, max_in_flight=max_in_flight)
        given = [n for n, v in (("cluster", cluster), ("address", address), ("cluster_class", cluster_class))
                 if v is not None]
        if len(given) > 1:
            raise ConfigurationError(f"DaskTaskRunner: give at most one of cluster, address and cluster_class; "
                                     f"got {', '.join(given)}.")
        if address is not None and (cluster_kwargs or adapt_kwargs):
            raise ConfigurationError("DaskTaskRunner: cluster_kwargs and adapt_kwargs start or shape a cluster; "
                                     "they cannot apply to an existing scheduler given by address.")
        if connect_timeout <= 0:
            raise ConfigurationError(f"DaskTaskRunner: connect_timeout must be > 0, got {connect_timeout!r}.")
        self.cluster = cluster
        self.address = address
        self.cluster_class = cluster_class
        self.cluster_kwargs = dict(cluster_kwargs or {})
        self.adapt_kwargs = dict(adapt_kwargs or {})
        self.client_kwargs = dict(client_kwargs or {})
        self.connect_timeout = connect_timeout
        self._client: Any = None
        self._own_cluster: Any = None

    def _config(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "address": self.address, "cluster_class": self.cluster_class,
                "cluster_kwargs": self.cluster_kwargs, "adapt_kwargs": self.adapt_kwargs,
                "client_kwargs": self.client_kwargs, "batch_size": self.batch_size,
                "max_in_flight": self.max_in_flight, "connect_timeout": self.connect_timeout}

    @property
    def client(self) -> Any:
        """The `distributed.Client` of the running flow run (None before start)."""
        return self._client

    # -- connecting -------------------------------------------------------------------------------------------
    def _connect(self) -> None:
        kwargs = {"timeout": self.connect_timeout, **self.client_kwargs}
        if self.address is not None:
            _check_scheduler(self.address, self.connect_timeout, kwargs.get("security"))
            try:
                self._client = distributed.Client(self.address, **kwargs)
            except (OSError, TimeoutError, asyncio.TimeoutError) as exc:
                raise ClusterConnectionError(
                    f"Could not connect to the Dask scheduler at {self.address} within {kwargs['timeout']} s "
                    f"({exc}). Check that it runs and the address is right, or leave address unset to start a "
                    f"LocalCluster for each flow run.") from exc
        else:
            cluster = self.cluster if self.cluster is not None else self._start_cluster()
            try:
                if self.adapt_kwargs:
                    cluster.adapt(**self.adapt_kwargs)
                self._client = distributed.Client(cluster, **kwargs)
            except BaseException as exc:
                self._close_own_cluster()
                raise ClusterConnectionError(f"Could not connect to the Dask cluster {cluster!r} at "
                                             f"{getattr(cluster, 'scheduler_address', '?')}: {exc!r}") from exc
        self._pending: dict[str, Batch] = {}
        self._plock = threading.Lock()
        self._client.subscribe_topic(TOPIC, self._on_event)
        self._client.subscribe_topic(SUMMARIES, self._on_summary)
        self._one_trip = self._install_handler()

    def _install_handler(self) -> bool:
        """Install the one-request attempt check on the scheduler; False (two requests per run, as before) if
        the scheduler cannot run it (e.g. it cannot import distributary)."""
        try:
            return bool(self._client.run_on_scheduler(_install_attempt_handler))
        except Exception as exc:
            engine_logger("runners").debug("The scheduler did not take the attempt handler (%r); each run's "
                                           "check takes two requests", exc)
            return False

    def _start_cluster(self) -> Any:
        cls = _load_class(self.cluster_class) if self.cluster_class is not None else distributed.LocalCluster
        kwargs = self.cluster_kwargs
        if cls is distributed.LocalCluster:
            kwargs = {**_LOCAL_DEFAULTS, **kwargs}
            if not kwargs["processes"] and "host" not in self.cluster_kwargs:
                del kwargs["host"]  # in-process workers talk over inproc://, which takes no host
        try:
            self._own_cluster = cls(**kwargs)
        except Exception as exc:
            raise ClusterConnectionError(f"Could not start {cls.__name__}(**{kwargs!r}): {exc!r}") from exc
        return self._own_cluster

    def _on_event(self, event: tuple[float, Any]) -> None:
        data = event[1]
        if isinstance(data, bytes):
            self._receiver.handle(data)

    def _on_summary(self, event: tuple[float, Any]) -> None:
        data = event[1]
        if not isinstance(data, bytes):
            return
        runner_id, batch_id, summary, again = pickle.loads(data)
        if runner_id == self._id:
            self._summary_arrived(batch_id, summary, again)

    def _summary_arrived(self, batch_id: str, summary: Any, again: bool = False) -> None:
        """The batch's outcome is known (its summary, or None when its task ended without one): once per batch.
        `again`: it comes from a re-execution of a batch that had finished; the first outcome reaches the driver
        first unless the worker died between marking the batch done and reporting it."""
        with self._plock:
            batch = self._pending.pop(batch_id, None)
        if batch is not None:
            if again:
                engine_logger("runners").warning(
                    "%d task run(s) of %r (batch %s) ran twice: their worker died after running them and before "
                    "their outcome reached the driver, and Dask ran them again; the second outcome is used.",
                    batch.size, batch.spec.name, batch.id)
            batch.summary_ref = summary
            self._batch_finished(batch)

    def _disconnect(self) -> None:
        client, self._client = self._client, None
        try:
            if client is not None:
                try:
                    client.unsubscribe_topic(TOPIC)
                    client.unsubscribe_topic(SUMMARIES)
                    client.set_metadata([_META, self._id], None)
                except Exception as exc:  # the scheduler may be gone already; nothing left to tidy then
                    engine_logger("runners").debug("Dask cleanup on %s failed: %r", self, exc)
                client.close()
        finally:
            self._close_own_cluster()

    def _close_own_cluster(self) -> None:
        cluster, self._own_cluster = self._own_cluster, None
        if cluster is not None:
            cluster.close()

    # -- backend hooks ----------------------------------------------------------------------------------------
    def _backend_threads(self) -> int:
        return sum(self._client.nthreads().values())

    def _backend_put_task(self, payload: bytes, digest: str) -> Any:
        return self._client.submit(_task_payload, payload, key=f"distributary-task-{digest[:16]}-{self._id[:8]}")

    def _backend_submit(self, batch: Batch, task_ref: Any, payload: bytes, upstream_refs: list[Any]) -> None:
        key = f"distributary-{batch.spec.name}-{batch.id}"
        batch.summary_ref = None
        with self._plock:
            self._pending[batch.id] = batch
        batch.ref = self._client.submit(_run_on_worker, task_ref, payload, self._id, batch.id, self._one_trip,
                                        batch.early, *upstream_refs, key=key)
        # The summary event arrives before the task's completion (same scheduler connection, in order); a task
        # that ends without one (an error, KilledWorker, cancelled) settles here.
        def settle_unless_finished(f: Any) -> None:
            if f.status != "finished":
                self._summary_arrived(batch.id, None)

        batch.ref.add_done_callback(settle_unless_finished)

    def _backend_collect(self, batches: list[Batch]) -> list[BatchSummary | BaseException | None]:
        out: list[BatchSummary | BaseException | None] = []
        for b in batches:
            summary, b.summary_ref = b.summary_ref, None
            out.append(summary if summary is not None else _exception_of(b.ref))
        return out

    def _backend_fetch(self, batches: list[Batch]) -> list[BatchResult | BaseException]:
        try:
            return list(self._client.gather([b.ref for b in batches]))
        except Exception:
            out: list[Any] = []
            for b in batches:
                try:
                    out.append(b.ref.result())
                except Exception as exc:
                    out.append(exc)
            return out

    def _backend_worker_died(self, exc: BaseException) -> bool:
        return isinstance(exc, distributed.KilledWorker)

    def _backend_cluster_lost(self, exc: BaseException) -> str | None:
        client = self._client
        lost = getattr(exc, "reason", None) == "scheduler-connection-lost" or (
            client is not None and client.status not in ("running", "newly-created"))
        if not lost:
            return None
        address = getattr(getattr(client, "scheduler", None), "address", None) or self.address or "?"
        return f"the Dask scheduler was lost (the client's connection to {address} broke)"

    def _backend_where(self) -> str:
        client = self._client
        address = getattr(getattr(client, "scheduler", None), "address", None) or self.address
        return f"The Dask scheduler at {address}"

    def _backend_cancel(self, batches: list[Batch]) -> None:
        """Cancel the batches' Dask futures: queued ones never run; a running one cannot be interrupted in its
        worker thread, which finishes it and drops the result."""
        refs = [b.ref for b in batches if b.ref is not None]
        if refs:
            self._client.cancel(refs, force=True)

    def _backend_release(self, batches: list[Batch]) -> None:
        for b in batches:
            b.ref = None
            b.summary_ref = None


def _exception_of(fut: Any) -> BaseException:
    try:
        if fut.status == "error":
            return fut.exception()
        cancelled = getattr(getattr(fut, "_state", None), "exception", None)  # FutureCancelledError(reason)
        if fut.status == "cancelled" and isinstance(cancelled, BaseException):
            return cancelled
        return DistributaryError(f"Dask reports the batch as {fut.status!r}.")
    except BaseException as exc:
        return exc


@contextlib.contextmanager
def get_dask_client(timeout: float | None = None) -> Iterator[Any]:
    """A `distributed.Client` on the cluster the current task run or flow run uses.

    Inside a task run on a Dask worker this is `distributed.worker_client()`: the task's thread leaves the
    worker's pool while the block runs, so tasks it submits and waits for cannot deadlock the worker. In a flow
    run that uses DaskTaskRunner it is the runner's own client.

        with get_dask_client() as client:
            total = client.submit(sum, [1, 2]).result()
    """
    try:
        get_worker()
        on_worker = True
    except ValueError:
        on_worker = False
    if on_worker:
        with distributed.worker_client(timeout=timeout) as client:
            yield client
        return
    ctx = flow_run_ctx.get()
    runner = ctx.task_runner if ctx is not None else None
    if isinstance(runner, DaskTaskRunner) and runner.client is not None:
        yield runner.client
        return
    raise DistributaryError("get_dask_client() works inside a task run on a Dask worker, or in a flow run that "
                            "uses DaskTaskRunner; here there is neither.")


__all__ = ["DaskTaskRunner", "get_dask_client"]
