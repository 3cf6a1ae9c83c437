"""`RayTaskRunner`: task runs execute on Ray (a local instance started per flow run, or an existing cluster),
mirroring prefect-ray. Workers need distributary installed.

    @flow(task_runner=RayTaskRunner(address="ray://head:10001"))
    def etl():
        with remote_options(num_cpus=2, resources={"gpu_box": 1}):
            heavy.map(chunks)

Batching, the bounded feeder, values left on the workers and worker-death handling come from `runners.remote`;
this module adds what is Ray's: connecting, one remote function per (task, Ray options) and run, the options
context manager, and a small actor that carries log records and live states from workers to the driver.
A worker process killed mid-run: Ray does not re-run the batch itself (`max_retries=0`); the driver sees
`WorkerCrashedError` and retries the run (if it has retries left) or ends it Crashed. A lost head (its GCS gone):
Ray would wait 60 s and then kill the driver's process; a watch on the GCS port ends every unfinished run Crashed
after HEAD_LOST_AFTER seconds instead, and the flow run ends in its own process.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from ..errors import ClusterConnectionError, ConfigurationError, MissingDependencyError
from ..logging import engine_logger
from ._sniff import GRPC, HTTP, SILENT, sniff
from .remote import Batch, BatchResult, BatchSummary, RemoteTaskRunner, run_batch, telemetry_sender

try:
    import ray
    import ray.exceptions as ray_errors
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingDependencyError("The 'ray' task runner (RayTaskRunner)", "ray", exc) from exc

_LOCAL_DEFAULTS: dict[str, Any] = {"include_dashboard": False}
_RESERVED = frozenset({"num_returns", "max_retries", "retry_exceptions", "name"})
_WORKER_DEATH = (ray_errors.WorkerCrashedError, ray_errors.NodeDiedError, ray_errors.OutOfMemoryError,
                 ray_errors.LocalRayletDiedError)
POLL_INTERVAL = 0.25  # seconds between two drains of the telemetry actor by the driver
CLOSURE_LIMIT = 512 * 1024  # a pickled task up to this size travels inside its remote function
_PUSH_TIMEOUT = 30.0
HEAD_LOST_AFTER = 10.0  # seconds the GCS may not answer before its cluster counts as lost (at most 1/3 of Ray's own)
HEAD_CHECK_INTERVAL = 1.0
_FETCH_WHEN_LOST = 5.0  # seconds to fetch values still reachable (inlined in the driver) once the head is lost
_log = engine_logger("runners")


# ---------------------------------------------------------------------------------------------------------------
# Ray options of the tasks submitted in a block
# ---------------------------------------------------------------------------------------------------------------
class RayOptions:
    """Ray task options (num_cpus, num_gpus, memory, resources, ...) and a key that identifies them."""

    __slots__ = ("options", "key")

    def __init__(self, options: Mapping[str, Any]):
        self.options = dict(options)
        self.key = repr(_freeze(self.options))

    def __repr__(self) -> str:
        return f"RayOptions({self.options!r})"


def _freeze(v: Any) -> Any:
    if isinstance(v, Mapping):
        return tuple(sorted((str(k), _freeze(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return tuple(_freeze(x) for x in v)
    return v


_NO_OPTIONS = RayOptions({})
_options_var: contextvars.ContextVar[RayOptions] = contextvars.ContextVar("distributary_ray_options",
                                                                        default=_NO_OPTIONS)


def _noop() -> None:  # pragma: no cover - never called; only used to let Ray validate options
    return None


@contextlib.contextmanager
def remote_options(**options: Any) -> Iterator[dict[str, Any]]:
    """Apply Ray task options to the tasks submitted (`.submit()`, `.map()`) inside the block.

    Any option of `ray.remote` for tasks is accepted (`num_cpus`, `num_gpus`, `memory`, `resources`,
    `accelerator_type`, `scheduling_strategy`, `runtime_env`, ...); the runner sets `num_returns`,
    `max_retries`, `retry_exceptions` and `name` itself. Nested blocks merge, the inner value winning
    (`resources` dicts are merged key by key). The options are taken when the task is submitted.

        with remote_options(num_cpus=2):
            with remote_options(resources={"big_memory": 1}):
                fit.submit(data)   # num_cpus=2 and resources={"big_memory": 1}
    """
    reserved = sorted(_RESERVED & set(options))
    if reserved:
        raise ConfigurationError(f"remote_options: {', '.join(reserved)} cannot be set; RayTaskRunner sets "
                                 f"them itself (retries are the task's `retries`).")
    current = _options_var.get().options
    merged = {**current, **options}
    if isinstance(current.get("resources"), Mapping) and isinstance(options.get("resources"), Mapping):
        merged["resources"] = {**current["resources"], **options["resources"]}
    try:
        if merged:
            ray.remote(**merged)(_noop)  # Ray's own validation, now rather than when the task is sent
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"remote_options({', '.join(f'{k}={v!r}' for k, v in options.items())}): "
                                 f"Ray rejects these options: {exc}") from exc
    token = _options_var.set(RayOptions(merged))
    try:
        yield dict(merged)
    finally:
        _options_var.reset(token)


def current_remote_options() -> dict[str, Any]:
    """The Ray options that `remote_options` blocks apply here (a copy)."""
    return dict(_options_var.get().options)


# ---------------------------------------------------------------------------------------------------------------
# Telemetry: one small actor per Ray connection; workers push, each runner's thread drains its channel
# ---------------------------------------------------------------------------------------------------------------
class TelemetryHub:
    """Holds telemetry payloads per channel (one channel per runner) until the driver drains them."""

    def __init__(self) -> None:
        self._queues: dict[str, list[bytes]] = {}

    def push(self, channel: str, payload: bytes) -> None:
        self._queues.setdefault(channel, []).append(payload)

    def drain(self, channel: str) -> list[bytes]:
        return self._queues.pop(channel, [])

    def forget(self, channel: str) -> None:
        self._queues.pop(channel, None)


_HubActor = ray.remote(num_cpus=0, max_restarts=0)(TelemetryHub)


def _hub_name(job_id: str) -> str:
    """The hub's actor name: one per Ray job (a driver connection), found by the job's workers."""
    return f"distributary-telemetry-{job_id}"


class _HubTransport:
    """A worker's telemetry transport: a blocking push, so a batch's records reach the hub before its outcome.
    The hub is looked up by name on first use, so batches without telemetry never touch it."""

    __slots__ = ("name", "hub")

    def __init__(self, name: str):
        self.name = name
        self.hub: Any = None

    def __call__(self, channel: str, payload: bytes) -> None:
        if self.hub is None:
            self.hub = ray.get_actor(self.name)
        ray.get(self.hub.push.remote(channel, payload), timeout=_PUSH_TIMEOUT)


class _Poller:
    """Driver thread that drains a runner's channel from the hub and hands each payload to `handle`."""

    def __init__(self, hub: Any, channel: str, handle: Any):
        self.hub, self.channel, self.handle = hub, channel, handle
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="distributary-ray-telemetry", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(POLL_INTERVAL):
            self.drain()

    def drain(self) -> None:
        try:
            payloads = ray.get(self.hub.drain.remote(self.channel), timeout=_PUSH_TIMEOUT)
        except (ray_errors.RayError, ConnectionError) as exc:
            _log.warning("Could not fetch log records and states from Ray workers: %r", exc)
            return
        for payload in payloads:
            self.handle(payload)

    def halt(self) -> None:
        """Stop draining (the hub is gone with the cluster's head); `stop(drain=False)` then only joins."""
        self._stop.set()

    def stop(self, drain: bool = True) -> None:
        self._stop.set()
        self._thread.join(_PUSH_TIMEOUT)
        if not drain:
            return
        self.drain()
        try:
            self.hub.forget.remote(self.channel)
        except ray_errors.RayError as exc:
            _log.debug("Could not tidy telemetry channel %s: %r", self.channel, exc)


class _HeadWatch:
    """Driver thread: asks the cluster's GCS for a gRPC handshake every HEAD_CHECK_INTERVAL seconds; once it has
    not answered for `lost_after` seconds, calls `lost(why)` once and stops. Nothing else notices: Ray's own
    clients retry silently for `gcs_rpc_server_reconnect_timeout_s` (60 s) and then kill the process."""

    def __init__(self, address: str, lost: Any):
        host, _, port = address.rpartition(":")
        self.address, self._host, self._port, self._lost = address, host.strip("[]"), int(port), lost
        # Ray's own deadline, as Ray reads it (its config names are lower case after the prefix)
        ray_limit = float(os.environ.get("RAY_gcs_rpc_server_reconnect_timeout_s") or 60)  # noqa: SIM112
        self.lost_after = min(HEAD_LOST_AFTER, ray_limit / 3)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="distributary-ray-head-watch", daemon=True)
        self._thread.start()

    def answers(self) -> bool:
        """Whether the GCS completes a gRPC handshake now (about a millisecond when it is up)."""
        try:
            return sniff(self._host, self._port, min(2.0, self.lost_after / 2)) == GRPC
        except OSError:
            return False

    def _loop(self) -> None:
        down_since: float | None = None
        while not self._stop.wait(HEAD_CHECK_INTERVAL):
            if self.answers():
                down_since = None
                continue
            now = time.monotonic()
            down_since = now if down_since is None else down_since
            if now - down_since >= self.lost_after:
                self._lost(f"the Ray cluster head was lost (GCS at {self.address} unreachable for "
                           f"{now - down_since:.0f} s)")
                return

    def stop(self) -> None:
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(5)


# ---------------------------------------------------------------------------------------------------------------
# Worker side
# ---------------------------------------------------------------------------------------------------------------
_transport: _HubTransport | None = None
_worker_name: str | None = None


def _run_on_worker(task_payload: bytes, hub_name: str, batch_payload: bytes,
                   upstreams: tuple[BatchResult, ...]) -> tuple[BatchResult, BatchSummary]:
    """Run one batch on a Ray worker; (values, small summary) become the two Ray objects of the call."""
    global _transport, _worker_name
    if _transport is None or _transport.name != hub_name:
        _transport = _HubTransport(hub_name)
    telemetry_sender().set_transport(_transport)
    if _worker_name is None:
        _worker_name = f"ray:{ray.util.get_node_ip_address()}:{os.getpid()}"
    return run_batch(task_payload, batch_payload, upstreams, worker=_worker_name).split()


class _TaskDef:
    """A pickled task as the runner ships it: inside the remote function's closure when small (Ray exports the
    function once and each worker process loads it once), else stored once with `ray.put` and passed by ref."""

    __slots__ = ("payload", "ref", "digest")

    def __init__(self, payload: bytes | None, ref: Any, digest: str):
        self.payload, self.ref, self.digest = payload, ref, digest


_REMOTE_FNS: dict[tuple, Any] = {}  # see RayTaskRunner.remote_function
_REMOTE_FNS_MAX = 256


def _batch_body(task_def: _TaskDef, hub_name: str) -> Any:
    """The function Ray runs for each batch of one task (defined per task and run, so small tasks travel in it)."""
    payload = task_def.payload
    if payload is not None:
        def run_task_batch(batch_payload: bytes, *upstreams: BatchResult) -> tuple[BatchResult, BatchSummary]:
            return _run_on_worker(payload, hub_name, batch_payload, upstreams)
    else:
        def run_task_batch(task_payload: bytes, batch_payload: bytes,  # type: ignore[misc]
                           *upstreams: BatchResult) -> tuple[BatchResult, BatchSummary]:
            return _run_on_worker(task_payload, hub_name, batch_payload, upstreams)
    return run_task_batch


# ---------------------------------------------------------------------------------------------------------------
# The connection, shared by the runners of this process (Ray allows one per process)
# ---------------------------------------------------------------------------------------------------------------
class _Connection:
    """This process's Ray connection as the runners share it: how many use it, whether a runner made it (then
    the last one to leave shuts it down), and its telemetry hub."""

    users = 0
    owned = False
    dead = False  # its cluster's head was lost: the last user shuts it down even if a runner did not make it
    hub: Any = None
    job: str | None = None
    name = ""


_conn = _Connection()
_conn_lock = threading.Lock()


def _target(address: str) -> tuple[str, int] | None:
    """(host, port) to probe for `address`, or None when Ray must resolve it itself."""
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS") or ""
        if not address or address == "auto":
            return None
    default_port = None
    if address.startswith("ray://"):
        address, default_port = address[len("ray://"):], 10001
    elif "://" in address:
        raise ConfigurationError(f"RayTaskRunner: address {address!r} is not a Ray address; use 'host:port' (a GCS "
                                 f"address), 'ray://host:port' (Ray Client), 'auto', or None for a local instance.")
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        if default_port is None:
            raise ConfigurationError(f"RayTaskRunner: address {address!r} needs a port ('host:port').")
        host, port = address, str(default_port)
    return (host.strip("[]") or "127.0.0.1"), int(port)


def _probe(address: str, timeout: float) -> None:
    """Fail within `timeout` unless a gRPC server (Ray's GCS, or Ray Client) answers at `address`: ray.init
    would otherwise retry for minutes where nothing listens, and for ever where something else does (a
    dashboard, a socket that never answers)."""
    target = _target(address)
    if target is None:
        return
    host, port = target
    try:
        what = sniff(host, port, timeout)
    except OSError as exc:
        raise ClusterConnectionError(
            f"Could not reach the Ray cluster at {address!r} ({host}:{port}) within {timeout} s: {exc}. "
            f"Check that it runs (`ray start --head`) and that the address is right, or leave address unset to "
            f"start a local Ray instance for each flow run.") from exc
    if what == GRPC:
        return
    ports = ("the GCS listens on 6379 by default (`ray start --head` prints the address to use), Ray Client on "
             "10001, the dashboard (HTTP) on 8265")
    if what == HTTP:
        why = f"it answers HTTP/1, not gRPC: a dashboard or another web server ({ports})"
    elif what == SILENT:
        why = f"it accepts connections but did not answer within {timeout} s: it is not a Ray GCS ({ports})"
    else:
        why = f"it does not speak gRPC: it is not a Ray GCS ({ports})"
    raise ClusterConnectionError(f"Could not connect to the Ray cluster at {address!r} ({host}:{port}): {why}. "
                                 f"Use the head node's GCS address, or leave address unset to start a local Ray "
                                 f"instance for each flow run.")


def _same_cluster(address: str) -> bool:
    target = _target(address)
    if target is None:
        return True
    current = ray.get_runtime_context().gcs_address or ""
    host, _, port = current.rpartition(":")
    try:
        return int(port) == target[1] and socket.gethostbyname(host) == socket.gethostbyname(target[0])
    except (OSError, ValueError):
        return False


def _acquire(address: str | None, init_kwargs: dict[str, Any], timeout: float) -> tuple[Any, str]:
    """Connect (or reuse this process's connection); return the telemetry hub of this connection and its name.

    Without an address Ray itself honours RAY_ADDRESS (joining that cluster); otherwise it starts a local instance.
    """
    joining = address if address is not None else (os.environ.get("RAY_ADDRESS") or None)
    if joining is not None:
        _probe(joining, timeout)
    with _conn_lock:
        if ray.is_initialized():
            if address is not None and not address.startswith("ray://") and not _same_cluster(address):
                raise ConfigurationError(
                    f"This process is already connected to the Ray cluster at "
                    f"{ray.get_runtime_context().gcs_address}; RayTaskRunner(address={address!r}) cannot connect to "
                    f"another one (Ray allows one connection per process). Call ray.shutdown() first.")
            if init_kwargs and _conn.users == 0 and not _conn.owned:
                _log.warning("Ray is already initialized in this process; RayTaskRunner uses that connection and "
                             "ignores init_kwargs %r.", init_kwargs)
        else:
            if joining is not None:
                kwargs, where = {**init_kwargs, "address": joining}, f"the Ray cluster at {joining!r}"
            else:
                kwargs, where = {**_LOCAL_DEFAULTS, **init_kwargs}, "a local Ray instance"
            try:
                ray.init(**kwargs)
            except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
                raise ClusterConnectionError(f"Could not connect to {where}: {exc}") from exc
            _conn.owned, _conn.hub = True, None
        job = ray.get_runtime_context().get_job_id()
        if _conn.hub is None or _conn.job != job:
            _conn.name = _hub_name(job)
            _conn.hub = _HubActor.options(name=_conn.name, get_if_exists=True).remote()
            _conn.job = job
        _conn.users += 1
        return _conn.hub, _conn.name


def _gcs_address(address: str | None) -> str | None:
    """The GCS address of this process's connection, to watch; None with Ray Client (its server's business)."""
    joining = address if address is not None else os.environ.get("RAY_ADDRESS") or ""
    if joining.startswith("ray://"):
        return None
    try:
        return ray.get_runtime_context().gcs_address or None
    except Exception as exc:  # an older or newer Ray: the head goes unwatched, as before
        _log.debug("No GCS address to watch: %r", exc)
        return None


def _release() -> None:
    """Drop this runner's use of the connection; the last user shuts Ray down if a runner started it."""
    with _conn_lock:
        _conn.users = max(0, _conn.users - 1)
        if _conn.users == 0 and (_conn.owned or _conn.dead):
            # Left connected to a lost head, Ray would kill this process once its reconnect timeout passes.
            _conn.owned, _conn.dead, _conn.hub, _conn.job, _conn.name = False, False, None, None, ""
            ray.shutdown()


class _DeadWorkers:
    """Which worker process ran a Ray task, from the task events the cluster's GCS keeps (read only when a worker
    died, again for a few seconds if they were not reported yet; nothing is read while all is well)."""

    TRIES = 12
    WAIT = 0.5  # seconds between tries: task events reach the GCS about once a second, later under load

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def name(self, task_id: Any, gcs_answers: Any = lambda: True) -> str | None:
        with self._lock:
            for attempt in range(self.TRIES):
                if not gcs_answers():  # the task events are on the head, and asking a lost one blocks
                    return None
                try:
                    found = self._lookup(task_id.binary())
                except Exception as exc:  # Ray Client, an older or newer Ray: the message just names no worker
                    _log.debug("Could not read Ray task events to name a dead worker: %r", exc)
                    return None
                if found is not None:
                    return found
                if attempt + 1 < self.TRIES:
                    time.sleep(self.WAIT)
        return None

    @staticmethod
    def _lookup(task_id: bytes) -> str | None:
        from ray._private.state import state
        from ray.core.generated import gcs_pb2

        node = pid = worker_id = None
        accessor = state._connect_and_get_accessor()
        parse = gcs_pb2.TaskEvents.FromString  # type: ignore[attr-defined]  # generated code without stubs
        for raw in accessor.get_task_events():
            event = parse(raw)
            if event.task_id == task_id and event.HasField("state_updates"):
                update = event.state_updates
                pid = update.worker_pid or pid
                node = update.node_id or node
                worker_id = update.worker_id or worker_id
        if not pid and worker_id:
            # A worker killed before it reported the task's running state: the raylet's lease names the worker,
            # and the GCS worker table its pid.
            for raw in accessor.get_worker_table():
                worker = gcs_pb2.WorkerTableData.FromString(raw)  # type: ignore[attr-defined]
                if worker.worker_address.worker_id == worker_id:
                    pid = worker.pid
        if not pid:
            return None
        ip = next((n.get("NodeManagerAddress") for n in ray.nodes() if node and n.get("NodeID") == node.hex()),
                  None)
        return f"ray:{ip or 'node ' + (node or b'?').hex()[:12]}:{pid}"


_dead_workers = _DeadWorkers()


# ---------------------------------------------------------------------------------------------------------------
# The runner
# ---------------------------------------------------------------------------------------------------------------
class RayTaskRunner(RemoteTaskRunner):
    """Runs task runs on Ray. With no `address` (and no RAY_ADDRESS in the environment), the flow run starts a
    local Ray instance (`ray.init(**init_kwargs)`, dashboard off unless asked) and shuts it down at its end; with
    `address` (`"host:port"`, `"ray://host:port"` or `"auto"`) it joins that cluster and only disconnects. If this
    process is already connected to Ray, the runner uses that connection and leaves it open. `batch_size` sets how many
    task runs of a `.map()` share one Ray task (None: adaptive, 1: no packing); at most `max_in_flight` batches
    are on the cluster at once. Unreachable addresses fail after `connect_timeout` seconds.
    Per-task Ray options: `with remote_options(num_cpus=..., resources=...)`."""

    name = "ray"

    def __init__(self, address: str | None = None, init_kwargs: dict[str, Any] | None = None,
                 batch_size: int | None = None, *, max_in_flight: int | None = None,
                 connect_timeout: float = 10.0):
        super().__init__(batch_size=batch_size, max_in_flight=max_in_flight)
        if address is not None and not isinstance(address, str):
            raise ConfigurationError(f"RayTaskRunner: address must be a string or None, got {address!r}.")
        if init_kwargs is not None and not isinstance(init_kwargs, Mapping):
            raise ConfigurationError(f"RayTaskRunner: init_kwargs must be a dict, got {init_kwargs!r}.")
        if "address" in (init_kwargs or {}):
            raise ConfigurationError("RayTaskRunner: pass the address as address=..., not in init_kwargs.")
        if not isinstance(connect_timeout, (int, float)) or connect_timeout <= 0:
            raise ConfigurationError(f"RayTaskRunner: connect_timeout must be > 0, got {connect_timeout!r}.")
        if address is not None:
            _target(address)  # a malformed address fails here, not at the first flow run
        self.address = address
        self.init_kwargs = dict(init_kwargs or {})
        self.connect_timeout = float(connect_timeout)
        self._hub: Any = None
        self._hub_name = ""
        self._poller: _Poller | None = None
        self._watch: _HeadWatch | None = None
        self._head_lost: str | None = None
        self._fns: dict[tuple[int, str], tuple[Any, Any]] = {}

    def _config(self) -> dict[str, Any]:
        return {"address": self.address, "init_kwargs": self.init_kwargs, "batch_size": self.batch_size,
                "max_in_flight": self.max_in_flight, "connect_timeout": self.connect_timeout}

    # -- connecting -------------------------------------------------------------------------------------------
    def _connect(self) -> None:
        self._hub, self._hub_name = _acquire(self.address, self.init_kwargs, self.connect_timeout)
        self._fns = {}
        self._head_lost = None
        self._poller = _Poller(self._hub, self._id, self._receiver.handle)
        gcs = _gcs_address(self.address)
        self._watch = _HeadWatch(gcs, self._on_head_lost) if gcs else None

    def _on_head_lost(self, why: str) -> None:
        """The head watch's verdict (its thread): every unfinished run ends Crashed now, nothing more is sent, and
        the connection is shut down when the runner leaves it."""
        self._head_lost = why
        _conn.dead = True
        if self._poller is not None:
            self._poller.halt()
        self._lose_cluster(why)

    def _disconnect(self) -> None:
        poller, self._poller = self._poller, None
        watch, self._watch = self._watch, None
        try:
            if watch is not None:
                watch.stop()
            if poller is not None:
                poller.stop(drain=self._head_lost is None)
        finally:
            self._fns = {}
            self._hub = None
            _release()

    # -- remote functions ---------------------------------------------------------------------------------------
    def remote_function(self, task: Any, options: RayOptions, task_def: _TaskDef) -> Any:
        """The Ray remote function that runs batches of `task` with `options`: defined once per run and cached by
        (task, options), so Ray exports it (and a small task inside it) once."""
        key = (id(task), options.key)
        hit = self._fns.get(key)
        if hit is not None and hit[0] is task:
            return hit[1]
        self._check_feasible(task, options.options)
        # `name` is a Ray task option its type stubs leave out of `ray.remote`'s overloads
        # One remote function per (task definition, options, hub) in this process, whatever runner asks: Ray exports
        # a function to the workers (and each worker process loads it) once, not once per flow run.
        shared_key = (task_def.digest, task_def.payload is None, options.key, self._hub_name)
        fn = _REMOTE_FNS.get(shared_key)
        if fn is None:
            remote_options: dict[str, Any] = {"num_returns": 2, "max_retries": 0, "retry_exceptions": False,
                                              "name": f"distributary:{task.name}", **options.options}
            fn = ray.remote(**remote_options)(_batch_body(task_def, self._hub_name))
            if len(_REMOTE_FNS) >= _REMOTE_FNS_MAX:
                _REMOTE_FNS.clear()
            _REMOTE_FNS[shared_key] = fn
        self._fns[key] = (task, fn)
        return fn

    @staticmethod
    def _check_feasible(task: Any, options: dict[str, Any]) -> None:
        """Warn when the cluster (now) lacks what the options ask for: Ray would hold the tasks without a word."""
        wanted = dict(options.get("resources") or {})
        for opt, res in (("num_cpus", "CPU"), ("num_gpus", "GPU"), ("memory", "memory")):
            if options.get(opt):
                wanted[res] = options[opt]
        if not wanted:
            return
        have = ray.cluster_resources()
        short = {k: v for k, v in wanted.items() if have.get(k, 0) < v}
        if short:
            _log.warning("Task %r asks Ray for %r but the cluster has %r; its runs wait until the cluster can "
                         "place them.", task.name, short, {k: have.get(k, 0) for k in short})

    # -- backend hooks ----------------------------------------------------------------------------------------
    def _gcs_answers(self) -> bool:
        """Whether the GCS answers now. Asked before each GCS read of the driver's own threads: while the GCS is
        gone such a read blocks, and one still waiting when Ray's reconnect timeout passes ends the process."""
        watch = self._watch
        return self._head_lost is None and (watch is None or watch.answers())

    def _backend_threads(self) -> int:
        if not self._gcs_answers():  # the driver keeps its last count
            raise ClusterConnectionError(self._head_lost or f"the Ray GCS at {self._watch.address} does not answer"
                                         if self._watch else "the Ray GCS does not answer")
        return int(ray.cluster_resources().get("CPU", 1))

    def _backend_put_task(self, payload: bytes, digest: str) -> _TaskDef:
        if len(payload) <= CLOSURE_LIMIT:
            return _TaskDef(payload, None, digest)
        return _TaskDef(None, ray.put(payload), digest)

    def _backend_submit(self, batch: Batch, task_ref: Any, payload: bytes, upstream_refs: list[Any]) -> None:
        ctx = batch.context
        options = ctx.get(_options_var, _NO_OPTIONS) if ctx is not None else _NO_OPTIONS
        fn = self.remote_function(batch.spec, options, task_ref)
        if task_ref.ref is None:
            batch.ref, summary = fn.remote(payload, *upstream_refs)
        else:
            batch.ref, summary = fn.remote(task_ref.ref, payload, *upstream_refs)
        fut = summary.future()
        batch.summary_ref = fut
        fut.add_done_callback(lambda _: self._batch_finished(batch))

    def _backend_collect(self, batches: list[Batch]) -> list[BatchSummary | BaseException | None]:
        out: list[BatchSummary | BaseException | None] = []
        for b in batches:
            fut, b.summary_ref = b.summary_ref, None
            exc = fut.exception()
            out.append(exc if exc is not None else fut.result())
        return out

    def _backend_fetch(self, batches: list[Batch]) -> list[BatchResult | BaseException]:
        # With the head lost, values inlined in the driver still come; those in a dead node's store never would.
        timeout = _FETCH_WHEN_LOST if self._head_lost is not None else None
        try:
            return list(ray.get([b.ref for b in batches], timeout=timeout))
        except ray_errors.RayError:
            out: list[BatchResult | BaseException] = []
            for b in batches:
                try:
                    out.append(ray.get(b.ref, timeout=timeout))
                except ray_errors.RayError as exc:
                    out.append(exc)
            return out

    def _backend_worker_died(self, exc: BaseException) -> bool:
        return isinstance(exc, _WORKER_DEATH)

    def _backend_dead_worker(self, batch: Batch) -> str | None:
        """Ray's WorkerCrashedError does not say which worker died; the cluster's task events do (the node and
        the pid of the worker process that ran the batch's Ray task), as "ray:<node ip>:<pid>"."""
        ref = batch.ref
        return _dead_workers.name(ref.task_id(), self._gcs_answers) if ref is not None else None

    def _backend_cancel(self, batches: list[Batch]) -> None:
        """`ray.cancel(force=True)`: a queued batch never runs, a running one's worker process is killed."""
        for b in batches:
            if b.ref is not None:
                try:
                    ray.cancel(b.ref, force=True)
                except (ray_errors.RayError, TypeError, ValueError) as exc:
                    _log.warning("Could not cancel Ray task of batch %s: %r", b.id, exc)

    def _backend_release(self, batches: list[Batch]) -> None:
        for b in batches:
            b.ref = None
            b.summary_ref = None


__all__ = ["RayTaskRunner", "remote_options", "current_remote_options", "RayOptions", "TelemetryHub"]
