"""What the sync and async forms share: the names argument and the holder recorded with a lease."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Names = str | Sequence[str]


def names_of(names: Any) -> list[str]:
    out = [names] if isinstance(names, str) else list(names)
    if not out:
        from ..errors import ConfigurationError

        raise ConfigurationError("concurrency() needs at least one limit name")
    return out


def holder_of() -> dict[str, Any] | None:
    """The task run or flow run this code runs in, recorded as the lease's holder (None outside runs)."""
    from ..context import flow_run_ctx, task_run_ctx

    t = task_run_ctx.get()
    if t is not None:
        return {"type": "task_run", "id": str(t.task_run.id)}
    f = flow_run_ctx.get()
    if f is not None and f.flow_run is not None:
        return {"type": "flow_run", "id": str(f.flow_run.id)}
    return None
