"""What a deployment's run executes in its own process: `python -m distributary.deployments.execute RUN_ID`.

It reads the run and its deployment from the run store, loads the flow from the entrypoint and runs it as that
run (same id, name, tags), so its states and logs land on the run created ahead of time. Exit code 0 when the
run completed, 1 otherwise; the `serve()` process that started it marks the run Crashed if it dies without a
final state.
"""
from __future__ import annotations

import logging
import sys
import uuid
from typing import Any

_log = logging.getLogger("distributary.deployments")
# Set by a dask/ray worker ("dask|tcp://host:8786", "ray|host:6379"): the run's tasks go to that cluster, unless
# its flow names a task runner of its own.
CLUSTER_ENV = "DISTRIBUTARY__TASK_RUNNER_ADDRESS"


def cluster_runner(flow: Any) -> Any:
    """The flow, on the cluster named in CLUSTER_ENV when it sets no task runner itself."""
    import os

    kind, _, address = os.environ.get(CLUSTER_ENV, "").partition("|")
    if not address or flow.task_runner is not None:
        return flow
    # the entrypoint's module is imported from a file, under a name the cluster's workers cannot import: its
    # tasks travel by value
    import cloudpickle

    module = sys.modules.get(getattr(flow.fn, "__module__", ""))
    if module is not None and module.__name__.startswith("distributary_entrypoint_"):
        cloudpickle.register_pickle_by_value(module)
    if kind == "dask":
        from ..runners.dask import DaskTaskRunner

        return flow.with_options(task_runner=DaskTaskRunner(address=address))
    from ..runners.ray import RayTaskRunner

    return flow.with_options(task_runner=RayTaskRunner(address=address))


def accepted_parameters(flow: Any, parameters: dict[str, Any]) -> dict[str, Any]:
    """The parameters the flow's function takes (others are logged and left out)."""
    unknown = flow.spec.unknown_parameters(parameters)
    if unknown:
        _log.warning("Flow %r does not take parameter(s) %s of its deployment; they are left out.", flow.name,
                     ", ".join(unknown))
    return {k: v for k, v in parameters.items() if k not in unknown}


def execute(flow_run_id: str) -> int:
    from ..context import DeploymentRunSpec, deployment_run
    from .definition import deployment_storage as get_storage
    from .definition import load_flow

    storage = get_storage()
    run = storage.read_flow_run(flow_run_id)
    dep = storage.read_deployment(run.deployment_id) if run.deployment_id else None
    if dep is None or not dep.entrypoint:
        _log.error("Flow run %s has no deployment with an entrypoint to load its flow from.", flow_run_id)
        return 2
    flow = cluster_runner(load_flow(dep.entrypoint, dep.path))
    deployment_run.set(DeploymentRunSpec(
        uuid.UUID(str(run.id)), run.name, frozenset(run.tags),
        run.expected_start_time.timestamp() if run.expected_start_time else None, dep.id, dep.name, dep.version,
        dict(run.parameters)))
    state = flow(**accepted_parameters(flow, run.parameters), return_state=True)
    if flow.isasync:
        import asyncio

        state = asyncio.run(state)
    return 0 if state.is_completed() else 1


def main(argv: list[str] | None = None) -> int:
    import os

    args = sys.argv[1:] if argv is None else argv
    if not args and os.environ.get("DISTRIBUTARY__FLOW_RUN_ID"):
        args = [os.environ["DISTRIBUTARY__FLOW_RUN_ID"]]
    if len(args) != 1:
        print("usage: python -m distributary.deployments.execute FLOW_RUN_ID (or DISTRIBUTARY__FLOW_RUN_ID set)",
              file=sys.stderr)
        return 2
    return execute(args[0])


if __name__ == "__main__":
    sys.exit(main())
