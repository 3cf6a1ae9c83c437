"""A child process's side of the context hand-off test (tests/test_runtime.py): spawned, it imports this module."""
from __future__ import annotations

import json
from typing import Any


def run_in_child(serialized: dict[str, Any], out_path: str) -> None:
    from distributary import get_run_logger
    from distributary.context import hydrated_context
    from distributary.runtime import flow_run, task_run

    with hydrated_context(serialized):
        get_run_logger().info("hello from the child process")
        seen = {"flow_run_id": str(flow_run.id), "flow_name": flow_run.flow_name, "task_run_id": str(task_run.id),
                "task_run_name": task_run.name, "tags": sorted(task_run.tags), "parameters": task_run.parameters}
    with open(out_path, "w") as f:
        json.dump(seen, f)
