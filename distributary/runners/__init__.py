"""Task runners by name: `"threads"`, `"processes"`, `"dask"`, `"ray"`. Runners are imported on first use, so
`import distributary` loads neither dask nor ray."""
from __future__ import annotations

import atexit
import importlib
import threading
from typing import Any

from ..context import flow_run_ctx
from ..errors import MissingDependencyError, UnknownNameError
from .base import TaskRunner

# name -> (dotted path "module:Class", extra to install or None)
_REGISTRY: dict[str, tuple[str, str | None]] = {
    "threads": ("distributary.runners.thread:ThreadPoolTaskRunner", None),
    "processes": ("distributary.runners.process:ProcessPoolTaskRunner", None),
    "dask": ("distributary.runners.dask:DaskTaskRunner", "dask"),
    "ray": ("distributary.runners.ray:RayTaskRunner", "ray"),
}
_CLASS_NAMES = {path.rsplit(":", 1)[1]: name for name, (path, _) in _REGISTRY.items()}


def register_runner(name: str, target: str, extra: str | None = None) -> None:
    """Register a runner class (as "module:Class") under `name`. Existing names are never overwritten."""
    if name in _REGISTRY and _REGISTRY[name][0] != target:
        raise ValueError(f"A task runner named {name!r} is already registered ({_REGISTRY[name][0]}).")
    _REGISTRY[name] = (target, extra)


def runner_names() -> list[str]:
    return sorted(_REGISTRY)


def load_runner_class(name: str) -> type[TaskRunner]:
    try:
        path, extra = _REGISTRY[name]
    except KeyError:
        raise UnknownNameError(f"Unknown task runner {name!r}; valid names are: {', '.join(runner_names())}. "
                               f"Or pass a TaskRunner instance.") from None
    module, _, cls = path.partition(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        if extra is not None and not isinstance(exc, MissingDependencyError):
            raise MissingDependencyError(f"The {name!r} task runner", extra, exc) from exc
        raise
    return getattr(mod, cls)


def get_runner(spec: Any) -> TaskRunner:
    """A runner instance from a name, a class or an instance."""
    if isinstance(spec, TaskRunner):
        return spec
    if isinstance(spec, type) and issubclass(spec, TaskRunner):
        return spec()
    if isinstance(spec, str):
        return load_runner_class(spec)()
    raise TypeError(f"task_runner must be a TaskRunner, a TaskRunner class or one of "
                    f"{', '.join(runner_names())}; got {spec!r}.")


_default_runner: TaskRunner | None = None
_default_lock = threading.Lock()


def current_runner() -> TaskRunner:
    """The runner of the current flow run, or (outside flows) a process-wide thread runner."""
    ctx = flow_run_ctx.get()
    if ctx is not None:
        return ctx.task_runner
    global _default_runner
    if _default_runner is None:
        with _default_lock:
            if _default_runner is None:
                runner = load_runner_class("threads")()
                runner.ensure_started()
                atexit.register(runner.__exit__, None, None, None)
                _default_runner = runner
    assert _default_runner is not None
    return _default_runner


# Helpers of the cluster runners, imported on first use: `from distributary.runners import DaskTaskRunner,
# get_dask_client` is the one-line change from `from prefect_dask import DaskTaskRunner, get_dask_client`.
_HELPERS = {"get_dask_client": ("dask", "get_dask_client"), "remote_options": ("ray", "remote_options")}


def __getattr__(name: str) -> Any:
    if name in _CLASS_NAMES:
        return load_runner_class(_CLASS_NAMES[name])
    if name in _HELPERS:
        runner, attr = _HELPERS[name]
        return getattr(importlib.import_module(load_runner_class(runner).__module__), attr)
    raise AttributeError(name)


__all__ = ["TaskRunner", "register_runner", "get_runner", "runner_names", "current_runner", "get_dask_client",
           "remote_options", "ThreadPoolTaskRunner",
           "ProcessPoolTaskRunner", "DaskTaskRunner", "RayTaskRunner"]
