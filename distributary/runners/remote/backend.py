"""The backend interface of the remote protocol: what a place to run task runs (a Dask cluster, a Ray cluster,
this machine's worker processes) must provide. A backend subclasses `RemoteTaskRunner` (driver.py), which
inherits these hooks, and implements them; the driver calls them from its feeder thread unless said otherwise.

Contract (tested for every backend by tests/runners/test_contract.py):

connect()       `_connect()`: reach or start the cluster, route telemetry payloads to `self._receiver.handle`.
disconnect()    `_disconnect()`: release the connection; stop only what this runner started.
threads()       `_backend_threads()`: worker threads now (sizes batches and bounds the batches in flight).
put_task()      `_backend_put_task(payload, digest)`: make the pickled task available to workers once; the
                handle it returns is passed to every `_backend_submit` of that task.
submit()        `_backend_submit(batch, task_ref, payload, upstream_refs)`: run
                `worker.run_batch(task_payload, payload, upstream_results, worker=name)` (or an equivalent loop
                over `worker.run_one`) remotely; set `batch.ref` if its values stay remote; call
                `self._batch_finished(batch)` (from any thread) once its summary can be collected.
collect()       `_backend_collect(batches)`: per batch its `BatchSummary` (a summary with `lost` set when its
                worker died), the exception it ended with, or None if not finished after all (the backend then
                calls `_batch_finished` again).
fetch()         `_backend_fetch(batches)`: the `BatchResult`s (values) of settled batches whose values stayed
                remote, fetched together.
worker_died()   `_backend_worker_died(exc)`: whether a batch's error means its worker died.
dead_worker()   `_backend_dead_worker(batch)`: optional, the worker that died running it, in words, when the
                error does not say (for the ERROR line and the run's message), else None.
release()       `_backend_release(batches)`: drop the remote copies of these batches' values.
settled()       `_backend_settled(batches)`: optional hook, these batches' summaries were applied.
cluster_lost()  `_backend_cluster_lost(exc)`: whether a batch's error means the cluster itself is gone (words
                for the message, e.g. "the Dask scheduler was lost"), else None. A backend that finds out by
                itself (Ray watches its GCS) calls the driver's `_lose_cluster(why)` from any thread instead.
where()         `_backend_where()`: the cluster in words, for messages (default: the runner's repr).
cancel()        `_backend_cancel(batches)`: optional hook, stop these batches where they run (or are queued) on
                the cluster, without waiting; called from the flow run's thread (its timeout). Their outcomes
                are then ignored.

Linking (optional, `_backend_links_unfinished = True`): a run whose argument is the future of an unfinished run
of the same runner is submitted at once, linked to that run's batch (`batch.ref`) on the cluster, which must then
start it only once that batch has finished (Dask's dependencies), and tell the worker (`run_batch(...,
defer_lost=True)`) to refuse to run it if that batch came back lost. Such a batch (`batch.early`) ending in an
error or refused is sent again without using an attempt, once its upstreams are done. Otherwise the driver sends
a run only once its upstream futures are done.

A worker death is reported as a `BatchSummary(lost=reason)`. With `runs` holding the entries of the runs that
finished before the death and `running` telling whether the next run had started, the driver keeps the finished
ones, charges an attempt to the running one only, and resends the rest without using a retry; without that
knowledge (`running=None`) it resends a multi-run batch one run per task to find the run that kills its worker.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from .worker import BatchResult, BatchSummary

# The driver's batch type (driver.Batch): the driver subclasses RemoteBackend[Batch], so this module needs no
# import of the driver that subclasses it.
Batch = TypeVar("Batch")


class RemoteBackend(ABC, Generic[Batch]):
    """The hooks a backend of `RemoteTaskRunner` implements (see the module docstring)."""

    _backend_links_unfinished = False  # whether runs may be linked to unfinished upstream batches (see above)

    @abstractmethod
    def _connect(self) -> None:
        """Reach or start the cluster; subscribe `self._receiver.handle` to the telemetry transport."""

    @abstractmethod
    def _disconnect(self) -> None:
        """Release the connection; stop the cluster only if this runner started it."""

    @abstractmethod
    def _backend_threads(self) -> int:
        """Worker threads in the cluster now (for batch sizes and the in-flight bound)."""

    @abstractmethod
    def _backend_put_task(self, payload: bytes, digest: str) -> Any:
        """Store a pickled task on the cluster once; return the handle passed to `_backend_submit`."""

    @abstractmethod
    def _backend_submit(self, batch: Batch, task_ref: Any, payload: bytes, upstream_refs: list[Any]) -> None:
        """Run the batch remotely, set `batch.ref` (and `batch.summary_ref`), and call
        `self._batch_finished(batch)` from any thread once it is done."""

    @abstractmethod
    def _backend_collect(self, batches: list[Batch]) -> list[BatchSummary | BaseException | None]:
        """The summaries of finished batches (or the error each ended with), fetched together. None for a batch
        that turned out not to be finished after all; the backend calls `_batch_finished` for it again."""

    @abstractmethod
    def _backend_fetch(self, batches: list[Batch]) -> list[BatchResult | BaseException]:
        """The BatchResults (values) of settled batches, fetched together."""

    def _backend_worker_died(self, exc: BaseException) -> bool:
        """Whether a batch's error means its worker died (the run may be retried)."""
        return False

    def _backend_dead_worker(self, batch: Batch) -> str | None:
        """The worker that died running `batch` ("ray:10.0.0.5:4134"), when the backend can tell, else None."""
        return None

    def _backend_settled(self, batches: list[Batch]) -> None:  # noqa: B027 (optional hook, empty on purpose)
        """Hook: these batches' summaries were applied."""

    def _backend_cancel(self, batches: list[Batch]) -> None:  # noqa: B027 (optional hook, empty on purpose)
        """Hook: stop these batches on the cluster (queued or running), without waiting for them."""

    def _backend_cluster_lost(self, exc: BaseException) -> str | None:
        """If a batch's error means the whole cluster is gone (a lost scheduler), say so in words, else None."""
        return None

    def _backend_where(self) -> str:
        """The cluster, for messages ("the Dask scheduler at tcp://...")."""
        return repr(self)

    def _backend_release(self, batches: list[Batch]) -> None:  # noqa: B027 (optional hook, empty on purpose)
        """Hook: drop the cluster's copies of these batches' results."""


__all__ = ["RemoteBackend"]
