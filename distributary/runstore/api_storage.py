"""`ApiRunStorage`: the run store of a distributary server, over HTTP, with the methods of `SqlRunStorage`, so the
sink, the client and the CLI work unchanged when `DISTRIBUTARY_API_URL` is set.

Reads go to Prefect's REST paths (`POST /flow_runs/filter`, ...) and come back as `schemas.objects` models;
`write(batch)` sends the sink's batches to `POST /ingest` in parts of at most `CHUNK_ROWS` rows. Every error is a
`RunStoreError` (or `ObjectNotFound` for an unknown id) whose message says where and what to do; the sink keeps
what could not be sent and sends it again (see `sink.py`). httpx is imported on first use.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from .. import settings
from ..errors import ConfigurationError, ObjectNotFound, RunStoreError
from .api_errors import MISSING, ApiError
from ..schemas import filters as F
from ..schemas import objects as O
from ..schemas import sorting as S
from .api_concurrency import ApiConcurrencyStorage
from .api_deployments import ApiDeploymentStorage
from .batch import Batch

CHUNK_ROWS = 20_000   # rows per ingest request (about 10 MB of task runs with their histories)
PAGE = 10_000         # the server's largest page: reads without a limit page through everything
_log = logging.getLogger("distributary.runstore")


def _dump(f: Any) -> Any:
    return None if f is None else f.model_dump(mode="json", exclude_none=True)


def _sort(sort: Any) -> Any:
    return None if sort is None else getattr(sort, "value", sort)


def _uuid(value: Any, what: str) -> str:
    try:
        return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))
    except ValueError:
        raise ObjectNotFound(f"{value!r} is not a {what} id (a UUID)") from None


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


class ApiRunStorage(ApiDeploymentStorage, ApiConcurrencyStorage):
    """The `RunStorage` interface over a distributary server's API at `url` (`http://host:4200/api`)."""

    def __init__(self, url: str, auth_string: str | None = None, timeout: float | None = None):
        self.url = url.rstrip("/")
        self._auth = str(settings.get("API_AUTH_STRING")) if auth_string is None else auth_string
        self._timeout = float(settings.get("API_REQUEST_TIMEOUT")) if timeout is None else timeout
        self._client: Any = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self.chunk_rows = CHUNK_ROWS

    def __getattr__(self, name: str) -> Any:
        # storage methods the API does not serve yet
        if name.startswith("_"):
            raise AttributeError(name)
        raise NotServed(f"`{name}` is not available through the server API at {self.url} yet: unset "
                            "DISTRIBUTARY_API_URL to use the database directly (DISTRIBUTARY_API_DATABASE_"
                            "CONNECTION_URL)")

    # -- HTTP --------------------------------------------------------------------------------------------------
    def _http(self) -> Any:
        if self._client is None or self._pid != os.getpid():  # a forked worker opens its own connections
            with self._lock:
                if self._client is None or self._pid != os.getpid():
                    self._pid = os.getpid()
                    import httpx

                    headers = {"User-Agent": "distributary"}
                    if self._auth:
                        headers["Authorization"] = "Basic " + base64.b64encode(self._auth.encode()).decode()
                    self._client = httpx.Client(base_url=self.url + "/", headers=headers, timeout=self._timeout)
        return self._client

    def request(self, method: str, path: str, *, body: Any = None, content: bytes | None = None,
                params: dict[str, Any] | None = None, missing_ok: bool = False) -> Any:
        """The decoded JSON answer of one request (None for an empty one; `MISSING` for a 404 when
        `missing_ok`)."""
        import httpx

        kwargs: dict[str, Any] = {"params": params}
        if content is not None:
            kwargs["content"] = content
            kwargs["headers"] = {"Content-Type": "application/json"}
        elif body is not None:
            kwargs["json"] = body
        try:
            resp = self._http().request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise RunStoreError(f"cannot reach the distributary server at {self.url} ({exc}): start it with "
                                "`distributary server start`, or unset DISTRIBUTARY_API_URL to use the embedded "
                                "run store") from exc
        if resp.status_code < 300:
            return resp.json() if resp.content else None
        detail = _detail(resp)
        if resp.status_code == 404:
            if missing_ok:
                return MISSING
            raise ObjectNotFound(detail)
        if resp.status_code == 401:
            raise RunStoreError(f"the server at {self.url} refused the request (401): set "
                                "DISTRIBUTARY_API_AUTH_STRING to the server's user:password")
        raise ApiError(resp.status_code, f"the server at {self.url} answered {resp.status_code} to {method} "
                                         f"/{path}: {detail}")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- writes --------------------------------------------------------------------------------------------------
    def write(self, batch: Batch) -> None:
        """Send `batch` to `POST /ingest` in parts. What was sent is taken out of `batch`, so a failure part way
        leaves in it exactly what is still to send (the sink retries it). A part the server refuses as malformed
        (422) cannot succeed later: it is reported as lost, loudly, and dropped."""
        batch.expand()
        while len(batch):
            part, taken = _take(batch, self.chunk_rows)
            data = json.dumps(part.to_dict(decode=True), default=str, separators=(",", ":")).encode()
            try:
                self.request("POST", "ingest", content=data)
            except ApiError as exc:
                if exc.status == 413 and self.chunk_rows > 100:
                    self.chunk_rows //= 4
                    continue
                if exc.status in (400, 422):
                    _log.error("The server refused %d run records as malformed; they are LOST: %s", len(part), exc)
                else:
                    raise
            taken()

    # -- flows ---------------------------------------------------------------------------------------------------
    def read_flows(self, flow_filter: F.FlowFilter | None = None, sort: S.FlowSort | None = None,
                   limit: int | None = None, offset: int = 0,
                   flow_run_filter: F.FlowRunFilter | None = None) -> list[O.Flow]:
        body = {"flows": _dump(flow_filter), "flow_runs": _dump(flow_run_filter), "sort": _sort(sort)}
        return self._paged("flows/filter", body, limit, offset, O.Flow.model_validate)

    def read_flow(self, flow_id: uuid.UUID | str) -> O.Flow:
        return O.Flow.model_validate(self.request("GET", f"flows/{_uuid(flow_id, 'flow')}"))

    def read_flow_by_name(self, name: str) -> O.Flow:
        return O.Flow.model_validate(self.request("GET", f"flows/name/{_quote(name)}"))

    # -- flow runs -----------------------------------------------------------------------------------------------
    def read_flow_runs(self, flow_filter: F.FlowFilter | None = None, flow_run_filter: F.FlowRunFilter | None = None,
                       sort: S.FlowRunSort | None = None, limit: int | None = None, offset: int = 0,
                       task_run_filter: F.TaskRunFilter | None = None) -> list[O.FlowRun]:
        body = {"flows": _dump(flow_filter), "flow_runs": _dump(flow_run_filter),
                "task_runs": _dump(task_run_filter), "sort": _sort(sort)}
        return self._paged("flow_runs/filter", body, limit, offset, O.FlowRun.model_validate)

    def read_flow_run(self, flow_run_id: uuid.UUID | str) -> O.FlowRun:
        return O.FlowRun.model_validate(self.request("GET", f"flow_runs/{_uuid(flow_run_id, 'run')}"))

    def delete_flow_run(self, flow_run_id: uuid.UUID | str) -> None:
        self.request("DELETE", f"flow_runs/{_uuid(flow_run_id, 'run')}")

    def set_flow_run_state(self, flow_run_id: uuid.UUID | str, state: Any, force: bool = False) -> O.State:
        """The state in effect after proposing `state` (over HTTP a `Cancelling` proposal is a cancel, as in
        `propose_flow_run_state`)."""
        got = self.propose_flow_run_state(flow_run_id, state, force=force)
        if got.state is None:
            raise ConfigurationError(f"flow run {flow_run_id}: {got.details.get('reason') or got.status}")
        return got.state

    def propose_flow_run_state(self, flow_run_id: uuid.UUID | str, state: Any,
                               force: bool = False) -> O.OrchestrationResult:
        body = {"state": {"type": state.type.value, "name": state.name, "message": state.message,
                          "timestamp": state.timestamp.isoformat()}, "force": force}
        return O.OrchestrationResult.model_validate(
            self.request("POST", f"flow_runs/{_uuid(flow_run_id, 'run')}/set_state", body=body))

    # -- task runs -----------------------------------------------------------------------------------------------
    def read_task_runs(self, flow_run_filter: F.FlowRunFilter | None = None,
                       task_run_filter: F.TaskRunFilter | None = None, sort: S.TaskRunSort | None = None,
                       limit: int | None = None, offset: int = 0,
                       flow_filter: F.FlowFilter | None = None) -> list[O.TaskRun]:
        body = {"flows": _dump(flow_filter), "flow_runs": _dump(flow_run_filter),
                "task_runs": _dump(task_run_filter), "sort": _sort(sort)}
        return self._paged("task_runs/filter", body, limit, offset, O.TaskRun.model_validate)

    def read_task_run(self, task_run_id: uuid.UUID | str) -> O.TaskRun:
        return O.TaskRun.model_validate(self.request("GET", f"task_runs/{_uuid(task_run_id, 'run')}"))

    def count_task_runs(self, task_run_filter: F.TaskRunFilter | None = None) -> int:
        return int(self.request("POST", "task_runs/count", body={"task_runs": _dump(task_run_filter)}))

    def read_states(self, run_id: uuid.UUID | str) -> list[O.State]:
        """A run's state history (task run or flow run), oldest first; [] for an unknown id."""
        rid = _uuid(run_id, "run")
        for path, param in (("task_run_states/", "task_run_id"), ("flow_run_states/", "flow_run_id")):
            got = self.request("GET", path, params={param: rid}, missing_ok=True)
            if got is not MISSING:
                return [O.State.model_validate(s) for s in got]
        return []

    # -- logs ----------------------------------------------------------------------------------------------------
    def read_logs(self, log_filter: F.LogFilter | None = None, sort: S.LogSort | None = S.LogSort.TIMESTAMP_ASC,
                  limit: int | None = None, offset: int = 0) -> list[O.Log]:
        body = {"logs": _dump(log_filter), "sort": _sort(sort) or S.LogSort.TIMESTAMP_ASC.value}
        return self._paged("logs/filter", body, limit, offset, _log_from_json)

    # -- artifacts -----------------------------------------------------------------------------------------------
    def read_artifacts(self, artifact_filter: F.ArtifactFilter | None = None, sort: S.ArtifactSort | None = None,
                       limit: int | None = None, offset: int = 0, latest: bool = False,
                       flow_run_filter: F.FlowRunFilter | None = None,
                       task_run_filter: F.TaskRunFilter | None = None) -> list[Any]:
        body = {"artifacts": _dump(artifact_filter), "flow_runs": _dump(flow_run_filter),
                "task_runs": _dump(task_run_filter), "sort": _sort(sort)}
        if latest:
            return self._paged("artifacts/latest/filter", body, limit, offset, O.ArtifactCollection.model_validate)
        return self._paged("artifacts/filter", body, limit, offset, O.Artifact.model_validate)

    def delete_artifacts(self, key: str) -> int:
        got = self.request("DELETE", f"artifacts/key/{_quote(key)}", missing_ok=True)
        return 0 if got is MISSING else int(got)

    def delete_artifact(self, artifact_id: uuid.UUID | str) -> None:
        self.request("DELETE", f"artifacts/{_uuid(artifact_id, 'artifact')}")

    # -- variables -----------------------------------------------------------------------------------------------
    def read_variables(self, variable_filter: F.VariableFilter | None = None, sort: S.VariableSort | None = None,
                       limit: int | None = None, offset: int = 0) -> list[O.Variable]:
        body = {"variables": _dump(variable_filter), "sort": _sort(sort)}
        return self._paged("variables/filter", body, limit, offset, O.Variable.model_validate)

    def read_variable_by_name(self, name: str) -> O.Variable | None:
        got = self.request("GET", f"variables/name/{_quote(name)}", missing_ok=True)
        return None if got is MISSING else O.Variable.model_validate(got)

    def set_variable(self, name: str, value: Any, tags: Sequence[str] | None = None,
                     overwrite: bool = False) -> O.Variable:
        """Create the variable, or replace its value when `overwrite`; ValueError if it exists otherwise."""
        try:
            got = self.request("POST", "variables/", body={"name": name, "value": value, "tags": list(tags or [])})
            return O.Variable.model_validate(got)
        except ApiError as exc:
            if exc.status != 409:
                raise
        if not overwrite:
            raise ValueError(f"Variable {name!r} already exists. Use `overwrite=True` to update it.")
        update: dict[str, Any] = {"value": value}
        if tags is not None:
            update["tags"] = list(tags)
        self.request("PATCH", f"variables/name/{_quote(name)}", body=update)
        var = self.read_variable_by_name(name)
        assert var is not None
        return var

    def delete_variable_by_name(self, name: str) -> bool:
        return self.request("DELETE", f"variables/name/{_quote(name)}", missing_ok=True) is not MISSING

    # -- paging --------------------------------------------------------------------------------------------------
    def _paged(self, path: str, body: dict[str, Any], limit: int | None, offset: int,
               parse: Callable[[Any], Any]) -> list[Any]:
        body = {k: v for k, v in body.items() if v is not None}
        out: list[Any] = []
        offset = offset or 0
        while True:
            want = PAGE if limit is None else min(PAGE, limit - len(out))
            if want <= 0:
                return out
            got = self.request("POST", path, body={**body, "limit": want, "offset": offset})
            out.extend(parse(item) for item in got)
            if len(got) < want:
                return out
            offset += len(got)


class NotServed(RunStoreError, AttributeError):
    """A storage method the server's API does not offer yet."""


def _detail(resp: Any) -> str:
    try:
        detail = resp.json().get("detail", resp.text)
    except ValueError:
        return resp.text[:500]
    if isinstance(detail, list):  # FastAPI's validation errors: name the fields
        return "; ".join(f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}" for d in detail)
    return str(detail)


def _log_from_json(d: dict[str, Any]) -> O.Log:
    d = dict(d)
    d["id"] = uuid.UUID(d["id"]).int if d.get("id") else None  # the server's UUID form of the row number
    return O.Log.model_validate(d)


def _take(batch: Batch, n: int) -> tuple[Batch, Callable[[], None]]:
    """At most `n` rows of `batch` (in write order), and a function that removes them from `batch`."""
    part = Batch()
    sent: list[tuple[str, Any]] = []  # (field, the keys sent) or (field, how many rows from the start)
    left = n
    for field in Batch.FIELDS:
        rows = getattr(batch, field)
        if left <= 0 or not rows:
            continue
        if isinstance(rows, dict):
            keys = list(rows)[:left]
            setattr(part, field, {k: rows[k] for k in keys})
            sent.append((field, keys))
            left -= len(keys)
        else:
            count = min(left, len(rows))
            setattr(part, field, rows[:count])
            sent.append((field, count))
            left -= count

    def taken() -> None:
        for field, what in sent:
            rows = getattr(batch, field)
            if isinstance(rows, dict):
                for k in what:
                    rows.pop(k, None)
            else:
                del rows[:what]

    return part, taken


_storages: dict[str, ApiRunStorage] = {}


def get_api_storage(url: str | None = None) -> ApiRunStorage:
    """The process-wide `ApiRunStorage` of `url` (default: DISTRIBUTARY_API_URL)."""
    url = url or str(settings.get("API_URL"))
    st = _storages.get(url)
    if st is None:
        st = _storages[url] = ApiRunStorage(url)
    return st


