"""Rows on their way to the run store (no SQLAlchemy here: the sink builds batches before the database is open)."""
from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Sequence
from typing import Any

from .compact import Block, Json, task_run_blocks, task_run_rows

FLOW_NAMESPACE = uuid.UUID("6f1d2c0e-4d8a-4c1b-9f0e-2f2b8a1f5d11")


def flow_id_for(name: str) -> str:
    """Flow ids are derived from the name, so every process agrees on them without asking the database."""
    return str(uuid.uuid5(FLOW_NAMESPACE, name))


class Batch:
    """Rows to write in one transaction. Flow runs, task runs and artifacts are upserts by id (the newest row
    wins); states and logs are appended; artifact updates (progress) change existing rows. Task runs may also
    come compact (`compact`: (created, flat encoding, count) chunks from `rows.compact_task_runs`, oldest first),
    made into rows by `expand()` where the batch is written."""

    FIELDS = ("flows", "flow_runs", "task_runs", "states", "logs", "artifacts", "artifact_updates")
    __slots__ = (*FIELDS, "compact")

    def __init__(self) -> None:
        self.flows: dict[str, dict[str, Any]] = {}
        self.flow_runs: dict[str, dict[str, Any]] = {}
        self.task_runs: dict[str, dict[str, Any]] = {}
        self.states: list[dict[str, Any]] = []
        self.logs: list[dict[str, Any]] = []
        self.artifacts: dict[str, dict[str, Any]] = {}
        self.artifact_updates: dict[str, dict[str, Any]] = {}
        self.compact: list[tuple[float, list[Any], int]] = []

    def __len__(self) -> int:
        return sum(len(getattr(self, f)) for f in self.FIELDS) + sum(c[2] for c in self.compact)

    def expand(self) -> None:
        """Make the compact task runs rows (`task_runs`); a no-op once done."""
        if self.compact:
            for now, flat, _ in self.compact:
                task_run_rows(flat, now, self.task_runs)
            self.compact = []

    def add_artifact(self, data: dict[str, Any]) -> None:
        """An `artifact` event: a new artifact (version), or `{"op": "update", "id", "data", "updated"}`."""
        aid = str(data["id"])
        if data.get("op") == "update":
            if aid in self.artifacts:
                self.artifacts[aid].update(data=data["data"], updated=data["updated"])
            else:
                self.artifact_updates[aid] = {"id": aid, "data": data["data"], "updated": data["updated"]}
            return
        row = {k: data.get(k) for k in ("key", "type", "description", "data", "flow_run_id", "task_run_id",
                                         "created", "updated")}
        row["id"] = aid
        for k in ("flow_run_id", "task_run_id"):
            row[k] = None if row[k] is None else str(row[k])
        self.artifacts[aid] = row

    def merge(self, other: Batch) -> None:
        if self.compact and other.task_runs:
            self.expand()  # a batch's compact runs are newer than its rows: keep that order
        self.flows.update(other.flows)
        self.flow_runs.update(other.flow_runs)
        self.task_runs.update(other.task_runs)
        self.states.extend(other.states)
        self.logs.extend(other.logs)
        self.artifacts.update(other.artifacts)
        self.artifact_updates.update(other.artifact_updates)
        self.compact.extend(other.compact)

    def to_dict(self, decode: bool = False) -> dict[str, Any]:
        """The rows by field; `decode`: JSON values the sink encoded itself (`Json`) as plain values again (for
        a JSON body, where they would otherwise travel as strings)."""
        d: dict[str, Any] = {f: getattr(self, f) for f in self.FIELDS}
        if self.compact:
            d["compact"] = self.compact
        if decode:
            for f, rows in d.items():
                listed = rows.values() if isinstance(rows, dict) else rows
                if any(v.__class__ is Json for r in listed for v in r.values()):
                    plain = [{k: json.loads(v) if v.__class__ is Json else v for k, v in r.items()} for r in listed]
                    d[f] = {r["id"]: r for r in plain} if isinstance(rows, dict) else plain
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Batch:
        b = cls()
        for f in (*cls.FIELDS, "compact"):
            if f in d:
                setattr(b, f, d[f])
        return b


# ---------------------------------------------------------------------------------------------------------------
# Bulk statements: one SQL text for SQLite and PostgreSQL, run by the driver's executemany
# ---------------------------------------------------------------------------------------------------------------
# The JSON columns of each table (JSON values are encoded here, once). A test checks this against models.py.
JSON_COLUMNS: dict[str, frozenset[str]] = {
    "flow": frozenset(),
    "flow_run": frozenset({"parameters", "tags", "result_ref", "job_variables"}),
    "task_run": frozenset({"task_inputs", "tags", "result_ref", "state_history"}),
    "run_state": frozenset({"result_ref"}),
    "log": frozenset(),
    "artifact": frozenset({"data"}),
    "variable": frozenset({"value", "tags"}),
    "deployment": frozenset({"parameters", "tags", "job_variables", "parameter_openapi_schema"}),
    "deployment_schedule": frozenset({"schedule", "parameters"}),
    "work_pool": frozenset({"base_job_template"}),
    "work_queue": frozenset(),
    "worker": frozenset(),
    "concurrency_limit": frozenset(),
    "concurrency_lease": frozenset({"holder"}),
}
# table -> (how: "insert" | "upsert" | "ignore"), in the order a batch is written
WRITE_ORDER = (("flow", "flows", "ignore"), ("flow_run", "flow_runs", "upsert"), ("task_run", "task_runs", "upsert"),
               ("run_state", "states", "insert"), ("log", "logs", "insert"), ("artifact", "artifacts", "upsert"))
KEEP_ON_UPSERT = ("created",)


MAX_PARAMS = 30_000  # bound parameters per statement (SQLite allows 32,766, PostgreSQL 65,535)
MAX_ROWS = 500       # rows per multi-row INSERT


@functools.lru_cache(maxsize=256)
def bulk_sql(dialect: str, table: str, keys: tuple[str, ...], how: str, rows: int = 1) -> str:
    """INSERT of `rows` rows, INSERT ... ON CONFLICT (id) DO NOTHING, or an upsert keeping `created`."""
    mark = "%s" if dialect == "postgresql" else "?"
    json_cols = JSON_COLUMNS[table]
    values = ", ".join(f"CAST({mark} AS JSON)" if k in json_cols and dialect == "postgresql" else mark for k in keys)
    rows_sql = ", ".join([f"({values})"] * rows)
    return f"INSERT INTO {table} ({', '.join(keys)}) VALUES {rows_sql}" + _on_conflict(keys, how)


def _on_conflict(keys: Sequence[str], how: str) -> str:
    """The statement's ending for `how`: "insert" none, "ignore" DO NOTHING, "upsert" an update keeping `created`."""
    if how == "upsert":
        sets = ", ".join(f"{k} = excluded.{k}" for k in keys if k != "id" and k not in KEEP_ON_UPSERT)
        return f" ON CONFLICT (id) DO UPDATE SET {sets}" if sets else " ON CONFLICT (id) DO NOTHING"
    return " ON CONFLICT (id) DO NOTHING" if how == "ignore" else ""


def _encoded(table: str, rows: Sequence[dict[str, Any]]) -> dict[tuple[str, ...], list[list[Any]]]:
    """`rows` grouped by their columns (every row of one statement must have the same), as lists of values with
    the JSON columns encoded."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r), []).append(r)
    out: dict[tuple[str, ...], list[list[Any]]] = {}
    dumps = json.dumps
    for keys, group in groups.items():
        json_at = [i for i, k in enumerate(keys) if k in JSON_COLUMNS[table]]
        values = [list(r.values()) for r in group]
        if json_at:
            for vals in values:
                for i in json_at:
                    v = vals[i]
                    if v is not None and v.__class__ is not Json:
                        vals[i] = dumps(v)
        out[keys] = values
    return out


def _multi_row(dialect: str, table: str, keys: tuple[str, ...], how: str,
               values: Sequence[Sequence[Any]]) -> list[tuple[str, list[Any]]]:
    """(sql, flat parameters) pairs: multi-row INSERTs of up to MAX_ROWS rows each. Few statements, not one per
    row: the driver releases the interpreter lock around each statement, and a writer thread that gave it up once
    per row would wait for it once per row behind a busy flow's threads."""
    width = len(keys)
    per = max(1, min(MAX_ROWS, MAX_PARAMS // width))
    out = []
    for at in range(0, len(values), per):
        part: list[Any] = []
        for v in values[at:at + per]:
            part.extend(v)
        out.append((bulk_sql(dialect, table, keys, how, len(part) // width), part))
    return out


def _run(cursor: Any, dialect: str, table: str, keys: tuple[str, ...], how: str,
         values: Sequence[Sequence[Any]]) -> None:
    """Write `values` (rows of `keys`). PostgreSQL: one one-row statement through psycopg's executemany (its
    pipeline; a statement of thousands of placeholders is parsed anew each time, 12 s per 10^5 rows); SQLite:
    multi-row INSERTs."""
    if not values:
        return
    if dialect == "postgresql":
        cursor.executemany(bulk_sql(dialect, table, keys, how, 1), values)
        return
    for sql, params in _multi_row(dialect, table, keys, how, values):
        cursor.execute(sql, params)


@functools.lru_cache(maxsize=256)
def shared_sql(table: str, shared: tuple[str, ...], keys: tuple[str, ...], how: str, rows: int) -> str:
    """SQLite: the INSERT (or upsert keeping `created`) of `rows` rows whose `shared` columns have one value each,
    bound once (parameters ?1..?len(shared)), and whose `keys` columns are bound per row after them."""
    first = len(shared) + 1
    width = len(keys)
    head = "".join(f"?{i}, " for i in range(1, first))
    values = ", ".join("(" + head + ", ".join(f"?{first + r * width + i}" for i in range(width)) + ")"
                       for r in range(rows))
    columns = (*shared, *keys)
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values}" + _on_conflict(columns, how)


# rows per statement of a block (the rest go one row at a time): few statement texts, so SQLite's cache keeps them
SHARED_ROWS = (500, 100, 20)


def _run_block(cursor: Any, dialect: str, table: str, how: str, block: Block) -> None:
    """Write one block of `compact.task_run_blocks` (the rows of a block are of distinct runs)."""
    shared, keys, rows = block
    if not shared:
        _run(cursor, dialect, table, keys, how, rows)
        return
    values = list(shared.values())
    if dialect == "postgresql":
        _run(cursor, dialect, table, (*shared, *keys), how, [(*values, *r) for r in rows])
        return
    names = tuple(shared)
    at, left = 0, len(rows)
    for per in SHARED_ROWS:
        per = min(per, (MAX_PARAMS - len(values)) // len(keys))
        while left >= per:
            params = values[:]
            for r in rows[at:at + per]:
                params.extend(r)
            cursor.execute(shared_sql(table, names, keys, how, per), params)
            at, left = at + per, left - per
    if left:
        cursor.executemany(shared_sql(table, names, keys, how, 1), [(*values, *r) for r in rows[at:]])


def write_batch(cursor: Any, dialect: str, batch: Batch) -> None:
    """Run a batch's statements on a DB-API cursor inside the caller's transaction (rows it holds already are
    not appended again: `drop_stored`)."""
    blocks: list[Block] = []
    if batch.compact and not batch.task_runs:
        # compact chunks only: their rows straight from the encoding, no dict per row, oldest chunk first (a run
        # in several chunks ends with its newest row); the batch is left as it is: a failed write is retried
        for now, flat, _ in batch.compact:
            blocks.extend(task_run_blocks(flat, now))
    else:
        batch.expand()
    drop_stored(cursor, dialect, batch)
    for table, field, how in WRITE_ORDER:
        if table == "task_run":
            for block in blocks:
                _run_block(cursor, dialect, table, how, block)
        rows = getattr(batch, field)
        if rows:
            for keys, values in _encoded(table, list(rows.values()) if isinstance(rows, dict) else rows).items():
                _run(cursor, dialect, table, keys, how, values)
    if batch.artifact_updates:
        mark = "%s" if dialect == "postgresql" else "?"
        data = f"CAST({mark} AS JSON)" if dialect == "postgresql" else mark
        cursor.executemany(f"UPDATE artifact SET data = {data}, updated = {mark} WHERE id = {mark}",
                           [(json.dumps(u["data"]), u["updated"], u["id"]) for u in batch.artifact_updates.values()])


# ---------------------------------------------------------------------------------------------------------------
# At-least-once delivery: a batch sent again (the HTTP client resends one whose answer it did not get, a spooled
# batch is replayed after a crash) adds nothing. Runs and artifacts are upserts by id; appended rows (state
# history entries, log lines) that are already stored are dropped, inside the writing transaction.
# ---------------------------------------------------------------------------------------------------------------
STATE_KEY = ("run_id", "type", "timestamp")
LOG_KEY = ("flow_run_id", "task_run_id", "timestamp", "name", "level", "message")
_IN_CHUNK = 500  # values per IN (...) list (SQLite's parameter limit)


def _stored_keys(cursor: Any, table: str, key: tuple[str, ...], where: str,
                 params: Sequence[Any]) -> set[tuple[Any, ...]]:
    cursor.execute(f"SELECT {', '.join(key)} FROM {table} WHERE {where}", tuple(params))
    return {tuple(r) for r in cursor.fetchall()}


def drop_stored(cursor: Any, dialect: str, batch: Batch) -> None:
    """Remove from `batch.states` and `batch.logs` the rows the database holds already (same run, type and time
    for a state; same run, task run, time, logger, level and message for a log line)."""
    mark = "%s" if dialect == "postgresql" else "?"
    if batch.states:
        run_ids = sorted({s["run_id"] for s in batch.states})
        seen: set[tuple[Any, ...]] = set()
        for i in range(0, len(run_ids), _IN_CHUNK):
            part = run_ids[i:i + _IN_CHUNK]
            seen |= _stored_keys(cursor, "run_state", STATE_KEY,
                                 f"run_id IN ({', '.join([mark] * len(part))})", part)
        if seen:
            batch.states = [s for s in batch.states if tuple(s.get(k) for k in STATE_KEY) not in seen]
    if batch.logs:
        times = [lg["timestamp"] for lg in batch.logs]
        seen = _stored_keys(cursor, "log", LOG_KEY, f"timestamp >= {mark} AND timestamp <= {mark}",
                            (min(times), max(times)))
        if seen:
            batch.logs = [lg for lg in batch.logs if tuple(lg.get(k) for k in LOG_KEY) not in seen]

