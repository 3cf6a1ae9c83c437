"""Workers: processes that poll a work pool, claim its due runs atomically and run each one (`process`: in a
subprocess of its own; `dask`/`ray`: on a cluster; `docker`/`kubernetes`: in a container or a Job).
`distributary worker start --pool NAME`."""
from __future__ import annotations

__all__ = ["ContainerWorker", "ProcessWorker"]


def __getattr__(name: str) -> object:
    if name == "ProcessWorker":
        from .process import ProcessWorker

        return ProcessWorker
    if name == "ContainerWorker":
        from .container_worker import ContainerWorker

        return ContainerWorker
    raise AttributeError(f"module 'distributary.workers' has no attribute {name!r}")
