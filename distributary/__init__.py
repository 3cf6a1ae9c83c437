"""distributary: Prefect-3-compatible flows and tasks on interchangeable task runners (threads, processes,
Dask, Ray) with an fsspec result store.

    from distributary import flow, task, unmapped

Importing this package loads no dask, ray, pyarrow or cloud SDK; they are imported when first used.
"""
from __future__ import annotations

__version__ = "0.1.0"

from .context import get_run_context, tags
from .engine.resolve import allow_failure, quote, unmapped
from .flows import Flow, flow
from .futures import as_completed, wait
from .logging import get_run_logger
from .states import State
from .tasks import Task, task

__all__ = ["flow", "Flow", "task", "Task", "unmapped", "quote", "allow_failure", "get_run_logger", "State",
           "tags", "get_run_context", "wait", "as_completed", "__version__"]


def serve(*deployments: object, **kwargs: object) -> None:
    """Serve several deployments from one process (`distributary.serve(a.to_deployment("a"), ...)`); see
    `distributary.deployments.runner.serve`."""
    from .flows import _deployments  # the app is a layer above: named, imported on first use

    _deployments("runner:serve")(*deployments, **kwargs)


__all__ += ["serve"]
