"""Task runners by name: `"threads"`, `"processes"`, `"dask"`, `"ray"`. Runners are imported on first use, so
`import distributary` loads neither dask nor ray."""
from __future__ import annotations

import atexit
import importlib
import threading
from typing import Any, cast

from .._registry import Registry
from ..context import flow_run_ctx
from .base import TaskRunner

ENTRY_POINT_GROUP = "distributary.task_runners"  # third-party runners: name = "package.module:RunnerClass"

_BUILTIN = {
    "threads": ("distributary.runners.thread:ThreadPoolTaskRunner", None),
    "processes": ("distributary.runners.process:ProcessPoolTaskRunner", None),
    "dask": ("distributary.runners.dask:DaskTaskRunner", "dask"),
    "ray": ("distributary.runners.ray:RayTaskRunner", "ray"),
}
_runners: Registry[type[TaskRunner]] = Registry("task runner", ENTRY_POINT_GROUP,
                                                hint="Or pass a TaskRunner instance.")
for _name, (_path, _extra) in _BUILTIN.items():
    _runners.register(_name, _path, _extra)
_CLASS_NAMES = {path.rsplit(":", 1)[1]: name for name, (path, _) in _BUILTIN.items()}


def register_runner(name: str, target: str | type[TaskRunner], extra: str | None = None) -> None:
    """Register a runner class (or "module:Class", imported on first use) under `name`. A name already taken by
    another target is refused. Packages can also register through the `distributary.task_runners` entry points."""
    _runners.register(name, target, extra)


def runner_names() -> list[str]:
    return _runners.names()


def load_runner_class(name: str) -> type[TaskRunner]:
    return _runners.get(name)


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
        return cast(TaskRunner, ctx.task_runner)  # flows.py puts a TaskRunner there
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
