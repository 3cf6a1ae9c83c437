"""`POST /ingest` (distributary's own route): a batch of run records from a flow's HTTP sink, written in one
transaction, so recording 10^5 task runs is a few requests. The body is `runstore.batch.Batch.to_dict()` as JSON:
`{"flows": {id: row}, "flow_runs": {id: row}, "task_runs": {id: row}, "states": [row], "logs": [row],
"artifacts": {id: row}, "artifact_updates": {id: row}}`, rows with the run store's column names."""
from __future__ import annotations

import json

import orjson
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ...runstore.batch import Batch
from ...runstore.models import TABLES
from ..deps import Storage

router = APIRouter(tags=["ingest"])

# batch field -> (table whose columns its rows may use, rows keyed by id?)
FIELDS: dict[str, tuple[str, bool]] = {
    "flows": ("flow", True), "flow_runs": ("flow_run", True), "task_runs": ("task_run", True),
    "states": ("run_state", False), "logs": ("log", False), "artifacts": ("artifact", True),
    "artifact_updates": ("artifact", True),
}
COLUMNS = {table: frozenset(TABLES[table].c.keys()) for table, _ in FIELDS.values()}
REQUIRED = {"flows": {"id", "name"}, "flow_runs": {"id", "name", "flow_id", "flow_name"},
            "task_runs": {"id", "name", "task_key", "dynamic_key"}, "states": {"run_id", "type", "timestamp"},
            "logs": {"name", "level", "message", "timestamp"}, "artifacts": {"id", "type"},
            "artifact_updates": {"id"}}


def _bad(where: str, msg: str) -> HTTPException:
    return HTTPException(422, [{"loc": ["body", *where.split(".")], "msg": msg, "type": "value_error"}])


def parse_batch(raw: bytes) -> Batch:
    """The batch in a request body; a 422 naming the first bad field. Column names become SQL identifiers, so
    only the run store's own columns pass."""
    try:
        # orjson parses in a quarter of json's time (the body parse was 44% of the server's ingest CPU); what it
        # refuses and json takes (NaN, ints past 64 bits, lone surrogates) goes through json, as before
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None
    try:
        data = json.loads(raw) if data is None else data
    except ValueError as exc:
        raise _bad("", f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _bad("", "the body must be a JSON object of batch fields")
    for field, value in data.items():
        if field not in FIELDS:
            raise _bad(field, f"unknown batch field; expected one of {sorted(FIELDS)}")
        table, keyed = FIELDS[field]
        rows = value.values() if keyed and isinstance(value, dict) else value
        if not isinstance(value, dict if keyed else list):
            raise _bad(field, f"must be a JSON {'object of rows by id' if keyed else 'array of rows'}")
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise _bad(f"{field}.{i}", "a row must be a JSON object")
            unknown = row.keys() - COLUMNS[table]
            if unknown:
                raise _bad(f"{field}.{i}.{sorted(unknown)[0]}", f"not a column of {table}")
            missing = REQUIRED[field] - row.keys()
            if missing:
                raise _bad(f"{field}.{i}.{sorted(missing)[0]}", "field required")
    return Batch.from_dict(data)


@router.post("/ingest", status_code=200)
async def ingest(request: Request, storage: Storage) -> JSONResponse:
    """Write a batch of run records in one transaction; answers the number of rows written."""
    raw = await request.body()

    def write() -> int:
        batch = parse_batch(raw)
        try:
            storage.write(batch)
        except Exception as exc:
            # a row the database refuses (a NOT NULL column left out, ...): the sender's mistake, not the server's
            if any(cls.__name__ == "IntegrityError" for cls in type(exc).__mro__):
                raise _bad("", f"the run store refused the batch: {exc}".strip()) from None
            raise
        return len(batch)

    return JSONResponse({"rows": await run_in_threadpool(write)})
