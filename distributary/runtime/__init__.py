"""Information about the current run, read from anywhere inside it (Prefect's `prefect.runtime`):

    from distributary.runtime import flow_run, task_run
    print(flow_run.name, task_run.run_count)

Attributes are None (or empty) when not available and never raise. Override any of them from the environment
with `DISTRIBUTARY__RUNTIME__{SUBMODULE}__{KEY}=value` (cast to the attribute's type), e.g. in tests.
"""
from __future__ import annotations

from . import deployment, flow_run, task_run

__all__ = ["deployment", "flow_run", "task_run"]
