"""What the cluster runners (Dask, Ray) share on the driver: packing task runs into batches, a bounded feeder,
futures whose values stay on the cluster, and telemetry from workers. Backend-neutral: no dask or ray here.

# remote-api: v1
(API of this package: names are only ever added, never renamed.)

Modules: `driver` (RemoteTaskRunner, the feeder, futures, outcomes, worker-death policy), `batching` (packing
policy), `fanout` (a compact `.map()` on the driver), `worker` (run_batch / run_one, the per-process task cache), `telemetry` (logs and live states, both
ways) and `backend` (the documented interface a backend implements). A backend subclasses `RemoteTaskRunner`
and implements the hooks of `backend.RemoteBackend`; on the worker it calls `run_batch(...)` after
`telemetry_sender().set_transport(...)`, and feeds what arrives on the driver to `runner._receiver.handle`.
Backends: Dask (`runners/dask.py`), Ray (`runners/ray.py`), local worker processes (`runners/process.py`).

Packing (when it packs, and how to turn it off)
    `.map()` over n elements, with `batch_size=None` (the default), is cut into batches of
    `ceil(n / (PER_THREAD * worker_threads))` consecutive task runs, at most `MAX_BATCH`; each batch is ONE
    cluster task. So a map packs only when it has more than PER_THREAD (4) runs per worker thread, and each
    thread still gets about four batches to balance load. `.submit()` never packs. `batch_size=1` turns packing
    off; `batch_size=k` packs exactly k. Inside a batch the runs execute one after another in one worker thread,
    each with its own states, retries, cache lookup, persistence, hooks and result; a retry delay of one run
    holds back the runs after it in the same batch.
Bounded in flight
    At most `max_in_flight` batches (default `max(16, 4 * worker_threads)`) are on the cluster at once; the
    rest wait on the driver and one feeder thread sends more as batches finish, so the scheduler holds a
    bounded number of pending tasks whatever the number of task runs.
The tight loop and the compact form
    A batch of a plain task (no result options, hooks, retries, timeout, not async) whose call needs no upstream
    values runs each task run with `worker.run_plain`: one call of the function in the run's context, Running then
    Completed (or Failed with the exception, logged as the engine logs it), without the engine's step machinery.
    The run's record is made only if the task asks for it (`get_run_logger()`, `distributary.runtime`, an
    artifact) or the run fails; its live Running state is one slot per batch in the telemetry sender
    (`running`/`idle`). A run that completed with a sendable value ships nothing but its start and end time (two
    arrays per batch, `BatchSummary.starts/ends`, with None in `runs`) and its value travels packed
    (`BatchResult.packed`: no State per run on the worker); its states are built on the driver when the summary
    is applied, and the batch's states enter the transition seam as ONE bulk event (`transitions.set_states_many`).
    Any other run (other tasks, an exception, a returned State) ships its full entry as before.
Compact maps (`fanout`, `engine.fanout`)
    Where nothing watches each task run one by one (`transitions.task_runs_watched`), a `.map()` with plain
    arguments keeps no record, call or future per run on the driver: its batches (`Batch.compact`, at most
    `COMPACT_MAX_BATCH` runs) go out as a `worker.FanoutSpec` (a slice of its argument columns; the worker makes
    each call as it runs it), and one whose runs all went the plain way settles as its two arrays of times
    (`_apply_compact`) and, once fetched, its list of values. Its creation and each settled batch enter the
    transition seam as one event each (`runs.FANOUT_CREATED`, `runs.FANOUT_SETTLED`). Records, states and futures
    are made on demand (`RemoteFanout.future`, `Batch.states`); a batch that needs its runs one by one becomes
    ordinary first (`Batch.degrade`), and everything below applies to it unchanged.
Data path
    The task is pickled once per runner and handed to the backend once (`_backend_put_task`); each worker
    unpickles it once (`load_task`, cached by digest). A future passed to a downstream task becomes an
    `Upstream(slot, index)` placeholder plus a native dependency on the upstream's batch, so values move worker
    to worker. The driver receives only a small `BatchSummary` per batch (states without values); a value
    comes to the driver on `.result()`, and `FutureList.result()` fetches each batch once.
Worker death
    A batch whose worker died mid-run is not re-run blindly. When the backend knows which runs of the batch
    finished and which one was running (the process backend: each run reports back as it finishes), the finished
    ones keep their outcome, the running one is charged an attempt (retried if it has retries left, else Crashed
    saying which worker died), and the rest are sent again without using a retry. When it does not (Dask, Ray):
    one task run alone is retried or Crashed as above; several are sent again one per cluster task (no retry used
    up), and the run that kills its worker again is then retried or Crashed. Each crash is logged at ERROR once,
    naming the worker.
Telemetry
    Log records made on workers (`get_run_logger()`, `log_prints`) and the live states of runs that are still
    running are shipped in batches at least every `TELEMETRY_INTERVAL` s; the driver re-emits the records
    (`logging.emit_remote`) and shows live states on `future.state`. Final states come with the batch summary.
Run events (the transition seam)
    The driver applies every state a run went through on its worker, in order, with `transitions.set_states`
    when the run's outcome arrives (its batch's summary), and its own decisions (worker died: Crashed,
    AwaitingRetry; unsendable arguments: Failed) with `transitions.set_state`. Live states from telemetry are
    DISPLAY ONLY: they are coalesced per run on the worker (only the latest goes out), so they are a subsequence
    of the history, not the history; they are shown on `future.state` until the outcome arrives and never enter
    `run.state_history` nor the run events. A sink therefore sees each state of each run exactly once, in
    order, at the latest when the run's batch (or, for the process backend, the run itself) reports back.
"""
from __future__ import annotations

from .backend import RemoteBackend
from .batching import MAX_BATCH, PER_THREAD, choose_batch_size, plan_batches
from .driver import Batch, RemoteFuture, RemoteState, RemoteTaskRunner
from .telemetry import (
                        LOG,
                        STATE,
                        TELEMETRY_INTERVAL,
                        TelemetryReceiver,
                        TelemetrySender,
                        decode_telemetry,
                        encode_telemetry,
                        install_log_forwarding,
                        telemetry_sender,
)
from .worker import (
                        BatchHeader,
                        BatchResult,
                        BatchSummary,
                        CallSpec,
                        Settled,
                        SettledFuture,
                        Upstream,
                        link_upstreams,
                        load_task,
                        run_batch,
                        run_one,
)

__all__ = ["RemoteTaskRunner", "RemoteBackend", "RemoteFuture", "RemoteState", "Batch", "TelemetryReceiver",
           "choose_batch_size", "plan_batches", "PER_THREAD", "MAX_BATCH", "BatchHeader", "BatchResult",
           "BatchSummary", "CallSpec", "Upstream", "Settled", "SettledFuture", "run_batch", "run_one", "load_task",
           "link_upstreams", "TelemetrySender", "telemetry_sender", "install_log_forwarding", "encode_telemetry",
           "decode_telemetry", "LOG", "STATE", "TELEMETRY_INTERVAL"]
