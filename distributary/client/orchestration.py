"""`get_client()`: Prefect's client interface over the run store (the embedded SQLite file, or PostgreSQL by
URL; over HTTP once the server exists).

    from distributary.client.orchestration import get_client

    async with get_client() as client:          # or: client = get_client()
        flows = await client.read_flows(limit=5)

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(limit=10)

Methods keep Prefect's names, arguments (`flow_filter=`, `flow_run_filter=`, `sort=`, `limit=`, `offset=`) and
errors (`ObjectNotFound` for an unknown id).
"""
from __future__ import annotations

import asyncio
import functools
import uuid
from typing import Any

from ..errors import ConfigurationError, ObjectNotFound
from ..schemas import filters as F
from ..schemas import objects as O
from ..states import State


class SyncDistributaryClient:
    """The synchronous client (Prefect's `SyncPrefectClient`). Usable with or without `with`."""

    def __init__(self, url: str | None = None):
        self._url = url
        self._storage: Any = None

    @property
    def storage(self) -> Any:
        if self._storage is None:
            from ..runstore import get_storage

            self._storage = get_storage(self._url)
        return self._storage

    def __enter__(self) -> SyncDistributaryClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def api_healthcheck(self) -> Exception | None:
        """None when the run store can be read, else the error (Prefect's contract)."""
        try:
            self.storage.read_flows(limit=1)
        except Exception as exc:  # the caller wants the error as a value
            return exc
        return None

    # -- flows ---------------------------------------------------------------------------------------------------
    def read_flows(self, *, flow_filter: F.FlowFilter | None = None, flow_run_filter: F.FlowRunFilter | None = None,
                   sort: Any = None, limit: int | None = None, offset: int = 0, **_: Any) -> list[O.Flow]:
        return self.storage.read_flows(flow_filter=flow_filter, flow_run_filter=flow_run_filter, sort=sort,
                                       limit=limit, offset=offset)

    def read_flow(self, flow_id: uuid.UUID | str) -> O.Flow:
        return self.storage.read_flow(flow_id)

    def read_flow_by_name(self, flow_name: str) -> O.Flow:
        return self.storage.read_flow_by_name(flow_name)

    # -- flow runs -----------------------------------------------------------------------------------------------
    def read_flow_runs(self, *, flow_filter: F.FlowFilter | None = None,
                       flow_run_filter: F.FlowRunFilter | None = None, task_run_filter: F.TaskRunFilter | None = None,
                       sort: Any = None, limit: int | None = None, offset: int = 0, **_: Any) -> list[O.FlowRun]:
        return self.storage.read_flow_runs(flow_filter=flow_filter, flow_run_filter=flow_run_filter,
                                           task_run_filter=task_run_filter, sort=sort, limit=limit, offset=offset)

    def read_flow_run(self, flow_run_id: uuid.UUID | str) -> O.FlowRun:
        return self.storage.read_flow_run(flow_run_id)

    def read_flow_run_states(self, flow_run_id: uuid.UUID | str) -> list[O.State]:
        return self.storage.read_states(flow_run_id)

    def delete_flow_run(self, flow_run_id: uuid.UUID | str) -> None:
        self.storage.delete_flow_run(flow_run_id)

    def set_flow_run_state(self, flow_run_id: uuid.UUID | str, state: State, force: bool = False) -> O.OrchestrationResult:
        """Propose `state` as the flow run's state; `Cancelling` cancels the run (see
        `SqlRunStorage.propose_flow_run_state`), any other state is recorded."""
        return self.storage.propose_flow_run_state(flow_run_id, state, force=force)

    # -- task runs -----------------------------------------------------------------------------------------------
    def read_task_runs(self, *, flow_filter: F.FlowFilter | None = None,
                       flow_run_filter: F.FlowRunFilter | None = None, task_run_filter: F.TaskRunFilter | None = None,
                       sort: Any = None, limit: int | None = None, offset: int = 0, **_: Any) -> list[O.TaskRun]:
        return self.storage.read_task_runs(flow_filter=flow_filter, flow_run_filter=flow_run_filter,
                                           task_run_filter=task_run_filter, sort=sort, limit=limit, offset=offset)

    def read_task_run(self, task_run_id: uuid.UUID | str) -> O.TaskRun:
        return self.storage.read_task_run(task_run_id)

    def read_task_run_states(self, task_run_id: uuid.UUID | str) -> list[O.State]:
        return self.storage.read_states(task_run_id)

    # -- logs ----------------------------------------------------------------------------------------------------
    def read_logs(self, log_filter: F.LogFilter | None = None, limit: int | None = None, offset: int = 0,
                  sort: Any = None) -> list[O.Log]:
        return self.storage.read_logs(log_filter, sort=sort, limit=limit, offset=offset)

    # -- artifacts -----------------------------------------------------------------------------------------------
    def read_artifacts(self, *, artifact_filter: F.ArtifactFilter | None = None,
                       flow_run_filter: F.FlowRunFilter | None = None, task_run_filter: F.TaskRunFilter | None = None,
                       sort: Any = None, limit: int | None = None, offset: int = 0, **_: Any) -> list[O.Artifact]:
        return self.storage.read_artifacts(artifact_filter, sort=sort, limit=limit, offset=offset,
                                           flow_run_filter=flow_run_filter, task_run_filter=task_run_filter)

    def read_latest_artifacts(self, *, artifact_filter: F.ArtifactFilter | None = None,
                              flow_run_filter: F.FlowRunFilter | None = None,
                              task_run_filter: F.TaskRunFilter | None = None, sort: Any = None,
                              limit: int | None = None, offset: int = 0, **_: Any) -> list[O.ArtifactCollection]:
        return self.storage.read_artifacts(artifact_filter, sort=sort, limit=limit, offset=offset, latest=True,
                                           flow_run_filter=flow_run_filter, task_run_filter=task_run_filter)

    def delete_artifact(self, artifact_id: uuid.UUID | str) -> None:
        self.storage.delete_artifact(artifact_id)

    # -- work queues ---------------------------------------------------------------------------------------------
    @staticmethod
    def _pool(work_pool_name: str | None) -> str:
        if not work_pool_name:
            raise ConfigurationError("distributary's work queues belong to a work pool: pass work_pool_name= "
                                     "(`distributary work-pool ls` lists the pools)")
        return work_pool_name

    def create_work_queue(self, name: str, description: str | None = None, is_paused: bool | None = None,
                          concurrency_limit: int | None = None, priority: int | None = None,
                          work_pool_name: str | None = None) -> O.WorkQueue:
        """A new queue in the pool `work_pool_name` (priority 1 is claimed first; without one it goes last)."""
        return self.storage.create_work_queue(self._pool(work_pool_name), name, description=description,
                                              priority=priority, concurrency_limit=concurrency_limit,
                                              paused=bool(is_paused))

    def read_work_queue(self, id: uuid.UUID | str) -> O.WorkQueue:
        return self.storage.read_work_queue(id)

    def read_work_queue_by_name(self, name: str, work_pool_name: str | None = None) -> O.WorkQueue:
        return self.storage.read_work_queue_by_name(self._pool(work_pool_name), name)

    def read_work_queues(self, work_pool_name: str | None = None, work_queue_filter: Any = None,
                         limit: int | None = None, offset: int | None = None) -> list[O.WorkQueue]:
        """The queues of a pool (or of every pool) in claim order; `work_queue_filter`: Prefect's
        `WorkQueueFilter` or a dict, by `name.any_`."""
        names = None
        if work_queue_filter is not None:
            flt = work_queue_filter if isinstance(work_queue_filter, dict) else work_queue_filter.model_dump()
            names = (flt.get("name") or {}).get("any_")
        return self.storage.read_work_queues(work_pool_name, names=names, limit=limit, offset=offset or 0)

    def update_work_queue(self, id: uuid.UUID | str, **kwargs: Any) -> None:
        """Change a queue: `name=`, `description=`, `is_paused=`, `concurrency_limit=` (None clears it),
        `priority=` (Prefect's WorkQueueUpdate fields)."""
        if not kwargs:
            raise ValueError("update_work_queue needs at least one field to change (is_paused=, priority=, ...)")
        if "is_paused" in kwargs:
            kwargs["paused"] = kwargs.pop("is_paused")
        self.storage.update_work_queue(id, **kwargs)

    def delete_work_queue_by_id(self, id: uuid.UUID | str) -> None:
        self.storage.delete_work_queue(id)

    # -- variables -----------------------------------------------------------------------------------------------
    def read_variable_by_name(self, name: str) -> O.Variable | None:
        return self.storage.read_variable_by_name(name)

    def read_variables(self, limit: int | None = None) -> list[O.Variable]:
        return self.storage.read_variables(limit=limit)

    def create_variable(self, variable: Any) -> O.Variable:
        return self.storage.set_variable(variable.name, variable.value, tags=variable.tags)

    def update_variable(self, variable: Any) -> None:
        if self.storage.read_variable_by_name(variable.name) is None:
            raise ObjectNotFound(f"no variable named {variable.name!r} in the run store")
        self.storage.set_variable(variable.name, variable.value, tags=variable.tags, overwrite=True)

    def delete_variable_by_name(self, name: str) -> None:
        if not self.storage.delete_variable_by_name(name):
            raise ObjectNotFound(f"no variable named {name!r} in the run store")


_SYNC_METHODS = [n for n, v in vars(SyncDistributaryClient).items() if callable(v) and not n.startswith("_")]


def _make_async(name: str) -> Any:
    sync = getattr(SyncDistributaryClient, name)

    @functools.wraps(sync)
    async def method(self: DistributaryClient, *args: Any, **kwargs: Any) -> Any:
        # database reads and writes block: run them off the event loop
        return await asyncio.to_thread(sync, self._sync, *args, **kwargs)

    return method


class DistributaryClient:
    """The asynchronous client (Prefect's `PrefectClient`): the same methods as `SyncDistributaryClient`,
    awaited. Usable as `async with get_client() as client:` and also without it."""

    def __init__(self, url: str | None = None):
        self._sync = SyncDistributaryClient(url)

    async def __aenter__(self) -> DistributaryClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        pass


for _name in _SYNC_METHODS:
    setattr(DistributaryClient, _name, _make_async(_name))

PrefectClient = DistributaryClient          # Prefect's class names, for code that annotates with them
SyncPrefectClient = SyncDistributaryClient


def get_client(sync_client: bool = False, url: str | None = None) -> Any:
    """A client of the configured run store: async (default) or sync (`sync_client=True`)."""
    return SyncDistributaryClient(url) if sync_client else DistributaryClient(url)


__all__ = ["get_client", "DistributaryClient", "SyncDistributaryClient", "PrefectClient", "SyncPrefectClient"]
