"""What the services do in one pass, over the run store (`SqlRunStorage`)."""
from __future__ import annotations

import logging
from typing import Any

_log = logging.getLogger("distributary.server.services")


def scheduler_pass(storage: Any) -> int:
    """Create the upcoming runs of every deployment that is not paused; how many were new. Exactly once with
    any number of schedulers on the database (the runs' idempotency keys; see `DeploymentStorage.schedule_many`)."""
    made = int(storage.schedule_many())
    if made:
        _log.info("Scheduled %d new flow run(s).", made)
    return made


def late_runs_pass(storage: Any) -> tuple[int, list[str]]:
    """Mark Late the runs that missed their start, and Crash the runs of workers and `serve()` processes whose
    heartbeats stopped `DISTRIBUTARY_WORKER_HEARTBEAT_TIMEOUT` seconds ago; (late, crashed ids)."""
    from ... import settings
    from ...runstore.work_pools import SERVE_POOL

    late = int(storage.mark_late_runs())
    timeout = float(settings.get("WORKER_HEARTBEAT_TIMEOUT"))
    crashed: list[str] = []
    for pool in [SERVE_POOL, *(p.name for p in storage.read_work_pools())]:
        crashed.extend(storage.crash_orphaned_runs(pool, timeout=timeout))
    for rid in crashed:
        _log.warning("Flow run %s was Crashed: the worker or serve() process running it stopped sending "
                     "heartbeats.", rid)
    return late, crashed
