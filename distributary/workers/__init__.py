"""Workers: processes that poll a work pool, claim its due runs atomically and run each one (`process`: in a
subprocess of its own). `distributary worker start --pool NAME`."""
from __future__ import annotations

__all__ = ["ProcessWorker"]


def __getattr__(name: str) -> object:
    if name == "ProcessWorker":
        from .process import ProcessWorker

        return ProcessWorker
    raise AttributeError(f"module 'distributary.workers' has no attribute {name!r}")
