"""`run_deployment`: create a run of a deployment and (unless `timeout=0`) wait for it to finish. A `serve()`
process (or, later, a worker) serving the deployment picks the run up."""
from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any


def run_deployment(name: str | uuid.UUID, parameters: dict[str, Any] | None = None,
                   scheduled_time: dt.datetime | None = None, flow_run_name: str | None = None,
                   timeout: float | None = None, poll_interval: float = 1.0, tags: list[str] | None = None,
                   idempotency_key: str | None = None, job_variables: dict[str, Any] | None = None,
                   storage: Any = None) -> Any:
    """Create a flow run of the deployment `name` ("flow-name/deployment-name", or its id) and return it
    (`.id`, `.state`). `timeout=0` returns at once; a number of seconds waits at most that long for a final
    state; None waits until the run is final. The same `idempotency_key` twice returns the first run."""
    if storage is None:
        from .definition import deployment_storage as get_storage

        storage = get_storage()
    try:
        dep = storage.read_deployment(uuid.UUID(str(name)))
    except ValueError:
        dep = storage.read_deployment_by_name(str(name))
    run = storage.create_flow_run_from_deployment(dep.id, parameters=parameters, tags=tags,
                                                  scheduled_time=scheduled_time, idempotency_key=idempotency_key,
                                                  job_variables=job_variables, name=flow_run_name)
    if timeout == 0:
        return run
    deadline = None if timeout is None else time.monotonic() + timeout
    while not (run.state is not None and run.state.is_final()):
        if deadline is not None and time.monotonic() >= deadline:
            break
        time.sleep(poll_interval if deadline is None else max(0.0, min(poll_interval, deadline - time.monotonic())))
        run = storage.read_flow_run(run.id)
    return run
