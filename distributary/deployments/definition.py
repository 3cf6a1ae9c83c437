"""What a deployment is before it is registered (`RunnerDeployment`, made by `flow.to_deployment(...)`), and
entrypoints: the `path/file.py:function` a deployment's runs load their flow from."""
from __future__ import annotations

import importlib.util
import inspect
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from ..schedules import Schedule, construct_schedule
from .parameters import parameter_schema


def deployment_storage() -> Any:
    """The configured run store: the database (embedded SQLite or PostgreSQL), or the server's API when
    DISTRIBUTARY_API_URL is set."""
    from ..runstore import get_storage

    return get_storage()


def entrypoint_of(flow: Any, base: str | None = None) -> tuple[str, str]:
    """(entrypoint, path) of a flow defined in a file: `file.py:function` relative to `base` (default: the
    working directory) when the file is under it, else absolute."""
    fn = flow.fn
    try:
        source = inspect.getsourcefile(fn)
    except TypeError:
        source = None
    if not source or not os.path.exists(source):
        raise ConfigurationError(f"Flow {flow.name!r} is not defined in a file, so its deployment's runs cannot "
                                 "load it: define the flow in a .py file and serve it from there")
    # the flow must be a module-level name of its file: the name it is bound to in the function's globals
    module_globals = getattr(fn, "__globals__", {})
    attr = getattr(fn, "__name__", None)
    if not attr or module_globals.get(attr) is not flow:
        names = [k for k, v in module_globals.items() if v is flow]
        if not names:
            raise ConfigurationError(f"Flow {flow.name!r} is not a module-level name in {source}, so its runs "
                                     "cannot load it: define it at the top level of the file")
        attr = names[0]
    base = os.path.abspath(base or os.getcwd())
    src = os.path.abspath(source)
    rel = os.path.relpath(src, base)
    return (f"{src if rel.startswith('..') else rel}:{attr}", base)


def load_flow(entrypoint: str, path: str | None = None) -> Any:
    """The flow at `file.py:function` (relative to `path`). The file is imported as a module of its own, so its
    `if __name__ == "__main__":` block does not run."""
    file, sep, attr = entrypoint.rpartition(":")
    if not sep or not file or not attr:
        raise ConfigurationError(f"entrypoint {entrypoint!r} is not 'path/to/file.py:flow_function'")
    full = Path(path or ".") / file
    if not full.exists():
        raise ConfigurationError(f"the deployment's entrypoint file {full} does not exist: serve the flow again "
                                 "from where its file is")
    folder = str(full.parent.resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = f"distributary_entrypoint_{full.stem}"
    spec = importlib.util.spec_from_file_location(name, full)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    flow = getattr(module, attr, None)
    if flow is None or not hasattr(flow, "fn"):
        raise ConfigurationError(f"{full} has no flow named {attr!r} (entrypoint {entrypoint!r})")
    return flow


def _limit(value: Any) -> tuple[int | None, str | None]:
    if value is None:
        return None, None
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ConfigurationError(f"concurrency_limit must be at least 1, got {value}")
        return value, "ENQUEUE"
    limit, strategy = getattr(value, "limit", None), getattr(value, "collision_strategy", None)
    if limit is None:
        raise ConfigurationError(f"concurrency_limit must be an int or ConcurrencyLimitConfig(limit=...), "
                                 f"got {value!r}")
    return int(limit), str(getattr(strategy, "value", strategy) or "ENQUEUE")


class RunnerDeployment:
    """A deployment of one flow, ready to register (`apply()`) and to serve (`distributary.serve(...)`)."""

    def __init__(self, flow: Any, name: str, *, schedules: Sequence[Schedule] = (),
                 parameters: dict[str, Any] | None = None, tags: Sequence[str] | None = None,
                 description: str | None = None, version: str | None = None, concurrency_limit: Any = None,
                 paused: bool = False, job_variables: dict[str, Any] | None = None,
                 entrypoint: str | None = None, path: str | None = None, work_pool_name: str | None = None,
                 work_queue_name: str | None = None, enforce_parameter_schema: bool = True):
        if not isinstance(name, str) or not name or "/" in name:
            raise ConfigurationError(f"a deployment name must be a non-empty string without '/', got {name!r}")
        self.flow = flow
        self.name = name
        self.flow_name = flow.name
        self.schedules = list(schedules)
        self.parameters = dict(parameters or {})
        self.tags = list(tags or [])
        self.description = description if description is not None else flow.description
        self.version = version if version is not None else flow.version
        self.concurrency_limit, self.collision_strategy = _limit(concurrency_limit)
        self.paused = bool(paused)
        self.job_variables = dict(job_variables or {})
        if work_queue_name is not None and (not isinstance(work_queue_name, str) or not work_queue_name
                                            or "/" in work_queue_name):
            raise ConfigurationError(f"work_queue_name must be a non-empty string without '/', got "
                                     f"{work_queue_name!r}")
        self.work_pool_name, self.work_queue_name = work_pool_name, work_queue_name
        self.enforce_parameter_schema = bool(enforce_parameter_schema)
        source = getattr(flow, "_deployment_source", None)  # a flow from `from_source`: its file there
        if entrypoint is None and source is not None:
            entrypoint, path = source
        if entrypoint is None:
            entrypoint, path = entrypoint_of(flow, path)
        self.entrypoint, self.path = entrypoint, path or os.getcwd()
        # kept (Prefect accepts them too); runs get only the known ones
        self.unknown_parameters = flow.spec.unknown_parameters(self.parameters)
        self.parameter_openapi_schema = parameter_schema(flow.fn)

    @classmethod
    def from_flow(cls, flow: Any, name: str, *, cron: str | None = None, interval: Any = None,
                  rrule: str | None = None, schedules: Sequence[Schedule] | None = None,
                  timezone: str | None = None, anchor_date: Any = None, **kwargs: Any) -> RunnerDeployment:
        if schedules is not None and any(v is not None for v in (cron, interval, rrule)):
            raise ConfigurationError("give schedules=[...] or one of cron=, interval=, rrule=, not both")
        scheds = list(schedules or [])
        if any(v is not None for v in (cron, interval, rrule)):
            scheds = [construct_schedule(cron=cron, interval=interval, rrule=rrule, timezone=timezone,
                                         anchor_date=anchor_date)]
        for s in scheds:
            if not isinstance(s, Schedule):
                raise ConfigurationError(f"schedules must be distributary.schedules.Cron/Interval/RRule objects, "
                                         f"got {s!r}")
        return cls(flow, name, schedules=scheds, **kwargs)

    @property
    def full_name(self) -> str:
        return f"{self.flow_name}/{self.name}"

    def apply(self, storage: Any = None, work_pool_name: str | None = None) -> Any:
        """Register (create or update) the deployment in the run store; returns the stored `Deployment`. Its runs
        go to `work_pool_name` (or the pool it was made with), in its `work_queue_name` (created in the pool if
        missing, as Prefect does; the pool's `default` queue without one)."""
        if storage is None:
            storage = deployment_storage()
        work_pool_name = work_pool_name or self.work_pool_name
        return storage.create_deployment(
            flow_name=self.flow_name, name=self.name, entrypoint=self.entrypoint, path=self.path,
            description=self.description, version=self.version, parameters=self.parameters, tags=self.tags,
            paused=self.paused, schedules=self.schedules, concurrency_limit=self.concurrency_limit,
            collision_strategy=self.collision_strategy, work_pool_name=work_pool_name,
            work_queue_name=self.work_queue_name if work_pool_name else None, job_variables=self.job_variables,
            parameter_openapi_schema=self.parameter_openapi_schema,
            enforce_parameter_schema=self.enforce_parameter_schema)

    def __repr__(self) -> str:
        return f"RunnerDeployment(name={self.full_name!r}, schedules={self.schedules!r})"


def _docker_reachable() -> bool:
    """Whether a Docker engine answers on DOCKER_HOST or the default socket."""
    import socket

    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(2)
                s.connect(host[len("unix://"):])
        else:
            addr = host.split("://", 1)[-1]
            h, _, p = addr.partition(":")
            socket.create_connection((h, int(p or 2375)), timeout=2).close()
    except (OSError, ValueError):
        return False
    return True


def deploy(flow: Any, name: str, work_pool_name: str, *, image: Any = None, build: bool = True, push: bool = True,
           work_queue_name: str | None = None, job_variables: dict[str, Any] | None = None, storage: Any = None,
           **kwargs: Any) -> Any:
    """Register a deployment of `flow` whose runs go to the work pool `work_pool_name`, in its queue
    `work_queue_name` (created if the pool has none of that name; the pool's `default` queue without one): workers
    started with `distributary worker start --pool NAME` (and `--work-queue QUEUE`, to take only that queue's
    runs) run them. Returns the deployment's id."""
    from ..runstore.work_pools import render_job

    if storage is None:
        storage = deployment_storage()
    pool = storage.read_work_pool(work_pool_name)  # not there: an error saying how to create it
    variables = dict(job_variables or {})
    if image is not None:
        image_name = getattr(image, "name", image)
        if build and not _docker_reachable():
            raise ConfigurationError(
                f"deploy() would build the image {image_name!r}, which needs a Docker engine, and none is reachable "
                f"(DOCKER_HOST or /var/run/docker.sock). Pass build=False to use a prebuilt image, or deploy to a "
                f"process work pool (`distributary work-pool create NAME --type process`).")
        variables.setdefault("image", str(image_name))
    render_job(pool.base_job_template, variables)  # unknown job variables: a clear error now, not at run time
    d = RunnerDeployment.from_flow(flow, name, job_variables=variables, work_pool_name=work_pool_name,
                                   work_queue_name=work_queue_name, **kwargs)
    dep = d.apply(storage)
    queue = f" --work-queue {dep.work_queue_name}" if work_queue_name else ""
    print(f"Deployment {d.full_name!r} created on work pool {work_pool_name!r} (queue {dep.work_queue_name!r}). "
          f"Start a worker with `distributary worker start --pool {work_pool_name}{queue}` and run it with "
          f"`distributary deployment run '{d.full_name}'`.")
    return dep.id


def from_source(source: str, entrypoint: str) -> Any:
    """The flow at `entrypoint` in `source`: a local folder, or a git repository URL (`https://...`, `git@...`,
    `file:///path/repo`), cloned once into `DISTRIBUTARY_HOME/sources/` (and fast-forwarded on later calls).
    Its deployments run it from there."""
    import hashlib
    import subprocess

    from .. import settings

    local = Path(source).expanduser()
    if local.is_dir() and "://" not in source and not source.endswith(".git"):
        base = local.resolve()  # a folder (a git checkout or not) is used where it is
    else:
        base = Path(settings.get("HOME")) / "sources" / hashlib.sha1(source.encode()).hexdigest()[:16]
        git = ["git", "-c", "protocol.file.allow=always"]
        try:
            if (base / ".git").exists():
                subprocess.run([*git, "-C", str(base), "pull", "--ff-only", "-q"], check=True, capture_output=True,
                               text=True, timeout=300)
            else:
                base.parent.mkdir(parents=True, exist_ok=True)
                subprocess.run([*git, "clone", "-q", "--depth", "1", source, str(base)], check=True,
                               capture_output=True, text=True, timeout=300)
        except FileNotFoundError:
            raise ConfigurationError(f"from_source({source!r}) needs git, which is not installed") from None
        except subprocess.CalledProcessError as exc:
            raise ConfigurationError(f"could not clone {source!r}: {exc.stderr.strip() or exc}") from None
    flow = load_flow(entrypoint, str(base))
    flow._deployment_source = (entrypoint, str(base))
    return flow
