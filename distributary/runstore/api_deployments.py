"""Deployments, schedules, work pools and workers over a distributary server's API: the methods of
`DeploymentStorage` and `WorkPoolStorage` on `/deployments/...`, `/work_pools/...` and the run-control routes, so
`serve()`, `deploy()`, workers, `run_deployment` and the CLI work unchanged with DISTRIBUTARY_API_URL set.

`ApiDeploymentStorage` is mixed into `ApiRunStorage` (which provides `request`). Exactly-once holds as on the
database: the server's run store makes the same single claims and idempotent inserts.
"""
from __future__ import annotations

import datetime as dt
import time
import urllib.parse
import uuid
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, ObjectNotFound, ParameterTypeError
from ..schemas import objects as O
from .api_errors import ApiError

def _q(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def _id(value: Any) -> str:
    try:
        return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))
    except ValueError:
        raise ObjectNotFound(f"{value!r} is not an id (a UUID)") from None


def _iso(value: dt.datetime | float | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        value = dt.datetime.fromtimestamp(value, tz=dt.timezone.utc)
    return (value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)).isoformat()


def schedule_body(s: Any) -> dict[str, Any]:
    """A schedule (a `Schedule` or a stored `DeploymentSchedule`) as the API's ScheduleCreate."""
    sched = s.as_schedule() if isinstance(s, O.DeploymentSchedule) else s
    return {"schedule": sched.to_dict(), "active": bool(sched.active), "parameters": dict(sched.parameters or {}),
            "slug": sched.slug}


class ApiDeploymentStorage:
    """Deployments and work pools through the API (mixed into `ApiRunStorage`)."""

    if TYPE_CHECKING:
        url: str

        def request(self, method: str, path: str, *, body: Any = None, content: bytes | None = None,
                    params: dict[str, Any] | None = None, missing_ok: bool = False) -> Any: ...

        def read_flow_run(self, flow_run_id: uuid.UUID | str) -> O.FlowRun: ...

    # -- deployments ---------------------------------------------------------------------------------------------
    def create_deployment(self, *, flow_name: str, name: str, entrypoint: str | None = None, path: str | None = None,
                          description: str | None = None, version: str | None = None,
                          parameters: dict[str, Any] | None = None, tags: Sequence[str] | None = None,
                          paused: bool = False, schedules: Sequence[Any] | None = None,
                          concurrency_limit: int | None = None, collision_strategy: str | None = None,
                          work_pool_name: str | None = None, work_queue_name: str | None = None,
                          job_variables: dict[str, Any] | None = None,
                          parameter_openapi_schema: dict[str, Any] | None = None,
                          enforce_parameter_schema: bool = True) -> O.Deployment:
        body: dict[str, Any] = {
            "flow_name": flow_name, "name": name, "entrypoint": entrypoint, "path": path, "description": description,
            "version": version, "parameters": dict(parameters or {}), "tags": list(tags or []), "paused": paused,
            "concurrency_limit": concurrency_limit, "work_pool_name": work_pool_name,
            "work_queue_name": work_queue_name, "job_variables": dict(job_variables or {}),
            "parameter_openapi_schema": parameter_openapi_schema,
            "enforce_parameter_schema": bool(enforce_parameter_schema)}
        if schedules is not None:
            body["schedules"] = [schedule_body(s) for s in schedules]
        if concurrency_limit and collision_strategy:
            body["concurrency_options"] = {"collision_strategy": collision_strategy}
        return O.Deployment.model_validate(self.request("POST", "deployments/", body=body))

    def read_deployments(self, names: Iterable[str] | None = None, ids: Iterable[Any] | None = None,
                         limit: int | None = None, offset: int = 0) -> list[O.Deployment]:
        from .deployments import split_name

        if names is not None:
            out = []
            for n in names:
                flow_name, dep_name = split_name(n)
                got = self.request("GET", f"deployments/name/{_q(flow_name)}/{_q(dep_name)}", missing_ok=True)
                if isinstance(got, dict):  # not the 404 marker
                    out.append(O.Deployment.model_validate(got))
            deps = out
        else:
            body: dict[str, Any] = {"limit": 10_000}
            if ids is not None:
                body["deployments"] = {"id": {"any_": [_id(i) for i in ids]}}
            deps = [O.Deployment.model_validate(d) for d in self.request("POST", "deployments/filter", body=body)]
        if ids is not None and names is not None:
            wanted = {_id(i) for i in ids}
            deps = [d for d in deps if str(d.id) in wanted]
        deps = deps[offset or 0:]
        return deps if limit is None else deps[:limit]

    def read_deployment(self, deployment_id: uuid.UUID | str) -> O.Deployment:
        return O.Deployment.model_validate(self.request("GET", f"deployments/{_id(deployment_id)}"))

    def read_deployment_by_name(self, name: str) -> O.Deployment:
        from .deployments import split_name

        flow_name, dep_name = split_name(name)
        got = self.request("GET", f"deployments/name/{_q(flow_name)}/{_q(dep_name)}", missing_ok=True)
        if not isinstance(got, dict):  # 404
            raise ObjectNotFound(f"no deployment named {name!r} on the server at {self.url} (`distributary "
                                 "deployment ls` lists them; `flow.serve(...)` creates one)")
        return O.Deployment.model_validate(got)

    def update_deployment(self, deployment_id: uuid.UUID | str, **values: Any) -> O.Deployment:
        values.pop("last_polled", None)  # the server records polls itself
        if "collision_strategy" in values:
            strategy = values.pop("collision_strategy")
            if strategy:
                values["concurrency_options"] = {"collision_strategy": strategy}
        did = _id(deployment_id)
        if values:
            self.request("PATCH", f"deployments/{did}", body=values)
        return self.read_deployment(did)

    def delete_deployment(self, deployment_id: uuid.UUID | str) -> None:
        self.request("DELETE", f"deployments/{_id(deployment_id)}")

    def read_deployment_schedules(self, deployment_id: uuid.UUID | str) -> list[O.DeploymentSchedule]:
        got = self.request("GET", f"deployments/{_id(deployment_id)}/schedules")
        return [O.DeploymentSchedule.model_validate(s) for s in got]

    def set_deployment_schedules(self, deployment_id: uuid.UUID | str, schedules: Sequence[Any]) -> O.Deployment:
        did = _id(deployment_id)
        self.request("PATCH", f"deployments/{did}", body={"schedules": [schedule_body(s) for s in schedules]})
        return self.read_deployment(did)

    def update_deployment_schedule(self, deployment_id: uuid.UUID | str, schedule_id: uuid.UUID | str, *,
                                   schedule: Any = None, active: bool | None = None,
                                   parameters: dict[str, Any] | None = None,
                                   slug: str | None = None) -> O.DeploymentSchedule:
        did, sid = _id(deployment_id), _id(schedule_id)
        body = {"schedule": None if schedule is None else schedule.to_dict(), "active": active,
                "parameters": parameters, "slug": slug}
        self.request("PATCH", f"deployments/{did}/schedules/{sid}", body={k: v for k, v in body.items() if v is not None})
        return next(s for s in self.read_deployment_schedules(did) if str(s.id) == sid)

    def count_deployment_runs(self, deployment_id: uuid.UUID | str, state_types: Iterable[str]) -> int:
        return int(self.request("GET", f"deployments/{_id(deployment_id)}/active_runs",
                                params={"state_type": list(state_types)}))

    # -- runs of deployments -------------------------------------------------------------------------------------
    def create_flow_run_from_deployment(self, deployment_id: uuid.UUID | str, *,
                                        parameters: dict[str, Any] | None = None, tags: Iterable[str] | None = None,
                                        scheduled_time: dt.datetime | None = None,
                                        idempotency_key: str | None = None,
                                        job_variables: dict[str, Any] | None = None,
                                        name: str | None = None,
                                        enforce_parameter_schema: bool | None = None) -> O.FlowRun:
        body: dict[str, Any] = {"parameters": parameters, "tags": None if tags is None else list(tags),
                                "idempotency_key": idempotency_key, "job_variables": job_variables, "name": name,
                                "enforce_parameter_schema": enforce_parameter_schema}
        if scheduled_time is not None:
            body["state"] = {"type": "SCHEDULED", "state_details": {"scheduled_time": _iso(scheduled_time)}}
        try:
            got = self.request("POST", f"deployments/{_id(deployment_id)}/create_flow_run",
                               body={k: v for k, v in body.items() if v is not None})
        except ApiError as exc:
            if exc.status == 409:  # parameters the deployment's schema refuses: the error the database raises
                raise ParameterTypeError(str(exc).split(": ", 1)[-1]) from None
            raise
        return O.FlowRun.model_validate(got)

    def schedule_runs(self, deployment_id: uuid.UUID | str, now: dt.datetime | None = None, **bounds: Any) -> int:
        body: dict[str, Any] = {"start_time": _iso(now)}
        if "max_runs" in bounds:
            body["max_runs"] = bounds["max_runs"]
        if "min_runs" in bounds:
            body["min_runs"] = bounds["min_runs"]
        got = self.request("POST", f"deployments/{_id(deployment_id)}/schedule",
                           body={k: v for k, v in body.items() if v is not None})
        return int(got["created"])

    def schedule_many(self, deployment_ids: Iterable[Any] | None = None, now: dt.datetime | None = None,
                      **bounds: Any) -> int:
        if deployment_ids is None:
            deployment_ids = [d.id for d in self.read_deployments() if not d.paused]
        return sum(self.schedule_runs(i, now=now, **bounds) for i in deployment_ids)

    def read_due_runs(self, deployment_ids: Iterable[Any], before: dt.datetime | float | None = None,
                      limit: int | None = None, after: dt.datetime | float | None = None) -> list[O.FlowRun]:
        ids = [_id(i) for i in deployment_ids]
        if not ids:
            return []
        body = {"deployment_ids": ids, "scheduled_before": _iso(before if before is not None else time.time()),
                "scheduled_after": _iso(after), "limit": limit}
        got = self.request("POST", "deployments/get_scheduled_flow_runs",
                           body={k: v for k, v in body.items() if v is not None})
        return [O.FlowRun.model_validate(r) for r in got]

    def claim_flow_run(self, flow_run_id: uuid.UUID | str, state_name: str = "Pending",
                       message: str | None = None, worker_name: str | None = None) -> bool:
        body = {"state_name": state_name, "message": message, "worker_name": worker_name}
        got = self.request("POST", f"flow_runs/{_id(flow_run_id)}/claim",
                           body={k: v for k, v in body.items() if v is not None})
        return bool(got["claimed"])

    def cancel_flow_run(self, flow_run_id: uuid.UUID | str) -> O.FlowRun:

        try:
            return O.FlowRun.model_validate(self.request("POST", f"flow_runs/{_id(flow_run_id)}/cancel"))
        except ApiError as exc:
            if exc.status == 422:
                raise ConfigurationError(str(exc).split(": ", 1)[-1]) from None
            raise

    def read_cancelling(self, flow_run_ids: Iterable[Any]) -> set[str]:
        ids = [_id(i) for i in flow_run_ids]
        if not ids:
            return set()
        return set(self.request("POST", "flow_runs/cancelling", body={"ids": ids}))

    def mark_late_runs(self, now: dt.datetime | float | None = None, late_after: float | None = None,
                       deployment_ids: Iterable[Any] | None = None) -> int:
        body: dict[str, Any] = {"late_after": late_after}
        if deployment_ids is not None:
            body["deployment_ids"] = [_id(i) for i in deployment_ids]
        return int(self.request("POST", "flow_runs/mark_late", body={k: v for k, v in body.items() if v is not None}))

    # -- work pools ----------------------------------------------------------------------------------------------
    def create_work_pool(self, name: str, type: str = "process", description: str | None = None,
                         base_job_template: dict[str, Any] | None = None, concurrency_limit: int | None = None,
                         paused: bool = False) -> O.WorkPool:
        from .work_pools import POOL_TYPES

        if type not in POOL_TYPES:
            raise ConfigurationError(f"unknown work-pool type {type!r}: use one of {', '.join(POOL_TYPES)}")
        body = {"name": name, "type": type, "description": description, "base_job_template": base_job_template,
                "concurrency_limit": concurrency_limit, "is_paused": paused}
        try:
            got = self.request("POST", "work_pools/", body={k: v for k, v in body.items() if v is not None})
        except ApiError as exc:
            if exc.status == 409:
                raise ConfigurationError(f"work pool {name!r} already exists (`distributary work-pool inspect "
                                         f"{name}`)") from None
            raise
        return O.WorkPool.model_validate(got)

    def read_work_pools(self) -> list[O.WorkPool]:
        return [O.WorkPool.model_validate(p) for p in self.request("POST", "work_pools/filter",
                                                                    body={"limit": 10_000})]

    def read_work_pool(self, name: str) -> O.WorkPool:
        return O.WorkPool.model_validate(self.request("GET", f"work_pools/{_q(name)}"))

    def update_work_pool(self, name: str, **values: Any) -> O.WorkPool:
        if "paused" in values:
            values["is_paused"] = values.pop("paused")
        self.request("PATCH", f"work_pools/{_q(name)}", body=values)
        return self.read_work_pool(name)

    def delete_work_pool(self, name: str) -> None:
        self.request("DELETE", f"work_pools/{_q(name)}")

    def worker_heartbeat(self, work_pool_name: str, worker_name: str) -> None:
        self.request("POST", f"work_pools/{_q(work_pool_name)}/workers/heartbeat", body={"name": worker_name})

    def read_workers(self, work_pool_name: str) -> list[O.Worker]:
        got = self.request("POST", f"work_pools/{_q(work_pool_name)}/workers/filter", body={"limit": 10_000})
        return [O.Worker.model_validate(w) for w in got]

    def claim_pool_runs(self, work_pool_name: str, worker_name: str, limit: int,
                        work_queue_names: Iterable[str] | None = None) -> list[O.FlowRun]:
        if limit <= 0:
            return []
        body: dict[str, Any] = {"worker_name": worker_name, "limit": min(limit, 1_000)}
        if work_queue_names is not None:
            body["work_queue_names"] = list(work_queue_names)
        got = self.request("POST", f"work_pools/{_q(work_pool_name)}/get_scheduled_flow_runs", body=body)
        return [O.FlowRun.model_validate(r["flow_run"]) for r in got]

    def read_pool_due_runs(self, work_pool_name: str, before: dt.datetime | float | None = None,
                           after: dt.datetime | float | None = None, limit: int = 10,
                           work_queue_names: Iterable[str] | None = None) -> list[O.FlowRun]:
        body: dict[str, Any] = {"scheduled_before": _iso(before), "scheduled_after": _iso(after),
                                "limit": min(limit, 1_000)}
        if work_queue_names is not None:
            body["work_queue_names"] = list(work_queue_names)
        got = self.request("POST", f"work_pools/{_q(work_pool_name)}/get_scheduled_flow_runs",
                           body={k: v for k, v in body.items() if v is not None})
        return [O.FlowRun.model_validate(r["flow_run"]) for r in got]

    # -- work queues ---------------------------------------------------------------------------------------------
    def _queue_request(self, method: str, path: str, body: Any = None) -> Any:
        """A queue request; the server's refusal (a name taken, the default queue deleted, a bad value) as the
        ConfigurationError the database store raises."""
        try:
            return self.request(method, path, body=body)
        except ApiError as exc:
            if exc.status in (409, 422):
                raise ConfigurationError(str(exc)) from None
            raise

    def create_work_queue(self, work_pool_name: str, name: str, *, description: str | None = None,
                          priority: int | None = None, concurrency_limit: int | None = None,
                          paused: bool = False) -> O.WorkQueue:
        body = {"name": name, "description": description, "priority": priority,
                "concurrency_limit": concurrency_limit, "is_paused": paused}
        return O.WorkQueue.model_validate(self._queue_request(
            "POST", f"work_pools/{_q(work_pool_name)}/queues", {k: v for k, v in body.items() if v is not None}))

    def read_work_queues(self, work_pool_name: str | None = None, names: Iterable[str] | None = None,
                         limit: int | None = None, offset: int = 0) -> list[O.WorkQueue]:
        pools = [work_pool_name] if work_pool_name is not None else [p.name for p in self.read_work_pools()]
        body: dict[str, Any] = {"limit": 10_000}
        if names is not None:
            body["work_queues"] = {"name": {"any_": list(names)}}
        queues = [O.WorkQueue.model_validate(q) for pool in pools
                  for q in self.request("POST", f"work_pools/{_q(pool)}/queues/filter", body=body)]
        return queues[offset:None if limit is None else offset + limit]

    def read_work_queue(self, work_queue_id: uuid.UUID | str) -> O.WorkQueue:
        return O.WorkQueue.model_validate(self.request("GET", f"work_queues/{_id(work_queue_id)}"))

    def read_work_queue_by_name(self, work_pool_name: str, name: str) -> O.WorkQueue:
        return O.WorkQueue.model_validate(self.request("GET", f"work_pools/{_q(work_pool_name)}/queues/{_q(name)}"))

    def update_work_queue(self, work_queue_id: uuid.UUID | str, **values: Any) -> O.WorkQueue:
        if "paused" in values:
            values["is_paused"] = values.pop("paused")
        if "last_polled" in values:
            values["last_polled"] = _iso(values["last_polled"])
        self._queue_request("PATCH", f"work_queues/{_id(work_queue_id)}", values)
        return self.read_work_queue(work_queue_id)

    def delete_work_queue(self, work_queue_id: uuid.UUID | str) -> None:
        self._queue_request("DELETE", f"work_queues/{_id(work_queue_id)}")

    def crash_orphaned_runs(self, work_pool_name: str, timeout: float | None = None) -> list[str]:
        params = None if timeout is None else {"timeout": timeout}
        return list(self.request("POST", f"work_pools/{_q(work_pool_name)}/crash_orphaned_runs", params=params))

    def set_infrastructure_pid(self, flow_run_id: uuid.UUID | str, infrastructure_pid: str) -> None:
        self.request("PATCH", f"flow_runs/{_id(flow_run_id)}", body={"infrastructure_pid": infrastructure_pid})

    def read_pool_deployment_ids(self, work_pool_name: str) -> list[str]:
        got = self.request("POST", "deployments/filter",
                           body={"work_pools": {"name": {"any_": [work_pool_name]}}, "limit": 10_000})
        return [d["id"] for d in got]

