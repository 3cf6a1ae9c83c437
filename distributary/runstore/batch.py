"""Rows on their way to the run store (no SQLAlchemy here: the sink builds batches before the database is open)."""
from __future__ import annotations

import functools
import json
import pickle
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

FLOW_NAMESPACE = uuid.UUID("6f1d2c0e-4d8a-4c1b-9f0e-2f2b8a1f5d11")


def flow_id_for(name: str) -> str:
    """Flow ids are derived from the name, so every process agrees on them without asking the database."""
    return str(uuid.uuid5(FLOW_NAMESPACE, name))


def result_ref_row(ref: Any) -> dict[str, Any] | None:
    """A result reference as stored: where the result lives, never its bytes."""
    if ref is None:
        return None
    if isinstance(ref, dict):
        return ref
    url = getattr(ref, "store_url", None)
    if url is not None:
        return {"store_url": url, "key": ref.key, "storage_options": dict(getattr(ref, "storage_options", {}) or {})}
    return {"repr": repr(ref)}


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
    sql = f"INSERT INTO {table} ({', '.join(keys)}) VALUES " + ", ".join([f"({values})"] * rows)
    if how == "upsert":
        sets = ", ".join(f"{k} = excluded.{k}" for k in keys if k != "id" and k not in KEEP_ON_UPSERT)
        sql += f" ON CONFLICT (id) DO UPDATE SET {sets}" if sets else " ON CONFLICT (id) DO NOTHING"
    elif how == "ignore":
        sql += " ON CONFLICT (id) DO NOTHING"
    return sql


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


class Json(str):
    """A JSON column value already encoded (the sink encodes hot columns itself, faster than `json.dumps`)."""
    __slots__ = ()


def write_batch(cursor: Any, dialect: str, batch: Batch) -> None:
    """Run a batch's statements on a DB-API cursor inside the caller's transaction (rows it holds already are
    not appended again: `drop_stored`)."""
    direct: list[tuple[Any, ...]] = []
    if batch.compact and not batch.task_runs:
        # compact chunks only: their values straight from the encoding, no dict per row; a run in several chunks
        # once, its newest row (the batch is left as it is: a write that failed is retried with it)
        newest: dict[str, tuple[Any, ...]] = {}
        for now, flat, _ in batch.compact:
            for row in task_run_values(flat, now):
                newest[row[0]] = row
        direct = list(newest.values())
    else:
        batch.expand()
    drop_stored(cursor, dialect, batch)
    for table, field, how in WRITE_ORDER:
        if table == "task_run":
            _run(cursor, dialect, table, TASK_RUN_COLUMNS, how, direct)
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


def jsonable(value: Any) -> Any:
    """`value` if JSON can hold it, else a JSON-safe copy (objects become their repr)."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return json.loads(json.dumps(value, default=repr))


# ---------------------------------------------------------------------------------------------------------------
# Task runs, compact --------------------------------------------------------------------------------------------
# Per task run, HEAD fields, then STATE fields per state: id (int or UUID), name (None: "<task name>-<dynamic key>"),
# task name, dynamic key, task key, flow run id, tags, run count, start, end, cache key, task inputs, the number of
# states in the history column, the number of states that follow (the last is the row's state); per state: type
# value, name, message, timestamp, result reference (its JSON text, `_ref_json`). All in ONE flat list per batch:
# a list or tuple per run would be a container the garbage collector tracks, and 10^5 of them, in a driver holding
# millions of objects, make it run full collections that cost more than the encoding itself.
HEAD = 14
STATE = 5


def compact_task_runs(items: Iterable[tuple[Any, Any]]) -> list[Any]:
    """The flat encoding of (task run record, the state its event applied) pairs: the record's fields and its
    history up to that state (the record may have moved on; the next batch writes the rest)."""
    out: list[Any] = []
    ext = out.extend
    for run, state in items:
        h = run.state_history[:]  # a copy: task threads append to it meanwhile
        if h and h[-1] is state:
            n_hist = n = len(h)
        else:
            n_hist = next((i + 1 for i, st in enumerate(h) if st is state), 0)
            if n_hist:
                del h[n_hist:]
            else:  # not (yet) in the history: the row's state all the same
                n_hist, h = len(h), [*h, state]
            n = len(h)
        ext((run._id, run._name, run.task_name, run.dynamic_key, run.task_key, run.flow_run_id, run.tags,
             run.run_count, run.start_ts, run.end_ts, run.cache_key, run.task_inputs, n_hist, n))
        for st in h:
            ref, msg = st.result_ref, st.message
            if ref is None and msg is None:
                ext((st.type._value_, st.name, None, st.ts, None))
            else:
                ext((st.type._value_, st.name, None if msg is None else str(msg), st.ts,
                     None if ref is None else str.__str__(_ref_json(ref))))
    return out


def count_compact(flat: list[Any] | bytes) -> int:
    """How many task runs a flat encoding (or its pickle) holds."""
    if isinstance(flat, bytes):
        flat = pickle.loads(flat)
    i = count = 0
    while i < len(flat):
        i += HEAD + STATE * flat[i + HEAD - 1]
        count += 1
    return count


_ref_heads: dict[str, str] = {}  # store URL -> '{"store_url": "<url>", "key": '
_encode_str = json.encoder.encode_basestring_ascii  # what json.dumps uses for a str (ensure_ascii)
_repr_encoder = json.JSONEncoder(default=repr)  # json.dumps(..., default=repr) without a new encoder per call


def _ref_json(ref: Any) -> Json:
    """`json.dumps(result_ref_row(ref))`, made from parts for a ResultRef (the refs of one store share their URL
    and, mostly, no storage options): a cached or persisted run has one in its row and one in its history."""
    url = getattr(ref, "store_url", None)
    key = getattr(ref, "key", None)
    if url.__class__ is not str or key.__class__ is not str:
        return Json(_repr_encoder.encode(result_ref_row(ref)))
    head = _ref_heads.get(url)
    if head is None:
        head = '{"store_url": ' + _encode_str(url) + ', "key": '
        if len(_ref_heads) < 1_000:
            _ref_heads[url] = head
    options = getattr(ref, "storage_options", None)
    tail = ', "storage_options": {}}' if not options else (
        ', "storage_options": ' + _repr_encoder.encode(dict(options)) + "}")
    return Json(head + _encode_str(key) + tail)


_tag_json: dict[frozenset, Json] = {}  # the runs of one .map() share their tags: encoded once


def _tags(tags: Any) -> Json:
    got = _tag_json.get(tags)
    if got is None:
        got = Json(json.dumps(sorted(tags or ())))
        if len(_tag_json) < 10_000:
            _tag_json[tags] = got
    return got


# The history column of a run whose states have no message and no result reference (nearly all of a .map()'s) is
# one %-format of its timestamps into a template made once per sequence of (type, name): cheaper than encoding
# the items one by one, and the writer makes 10^5 of them a second.
_templates: dict[tuple[Any, ...], str] = {}


def _history(states: list[Any], count: int) -> Json:
    """The history column (JSON) of the first `count` states of a flat state list."""
    end = STATE * count
    # Per sequence of (type, name) with no message and no result reference (nearly every run of a .map()), a
    # template made once, filled with the timestamps: epoch seconds of this era with 7 decimals are exact (17
    # digits) and format faster than repr. The key holds the messages and references, so a template is only
    # found for a sequence without any.
    key = (*states[0:end:STATE], *states[1:end:STATE], *states[2:end:STATE], *states[4:end:STATE])
    template = _templates.get(key)
    if template is None and key[2 * count:].count(None) == 2 * count:
        template = "[" + ", ".join(json.dumps([t, n, None]).replace("%", "%%")[:-1] + ", %.7f]"
                                   for t, n in zip(key[:count], key[count:2 * count])) + "]"
        if len(_templates) < 1_000:
            _templates[key] = template
    if template is not None:
        times = states[3:end:STATE]
        if times and all(t.__class__ is float for t in times) and times[0] >= 1e9 and times[-1] < 1e10:
            return Json(template % tuple(times))
    items = []
    for j in range(0, end, STATE):
        t, name, msg, ts, ref = states[j:j + STATE]
        item = _repr_encoder.encode([t, name, msg, ts])
        items.append(item if ref is None else f"{item[:-1]}, {ref}]")
    return Json("[" + ", ".join(items) + "]")


_uuid_heads: dict[int, str] = {}  # value >> 32 -> the text of its first 28 characters (the runs of a .map() share it)


def _uuid_text(value: int) -> str:
    """str(uuid.UUID(int=value)); a map's run ids are consecutive (`runs.batch_run_ids`): their heads are shared."""
    high = value >> 32
    head = _uuid_heads.get(high)
    if head is None:
        h = f"{value:032x}"
        head = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:24]}"
        if len(_uuid_heads) >= 10_000:
            _uuid_heads.clear()
        _uuid_heads[high] = head
    return head + "%08x" % (value & 0xFFFFFFFF)


# the columns of a task-run row, in the order `task_run_values` makes them
TASK_RUN_COLUMNS = ("id", "name", "tags", "run_count", "start_time", "end_time", "total_run_time", "state_type",
                    "state_name", "state_message", "state_ts", "result_ref", "created", "task_key", "dynamic_key",
                    "cache_key", "flow_run_id", "task_inputs", "state_history")


def task_run_values(flat: list[Any] | bytes, now: float) -> list[tuple[Any, ...]]:
    """The task-run rows of a flat encoding (or of its pickle) as tuples of column values (`TASK_RUN_COLUMNS`),
    JSON columns encoded (`Json`); a run's later row after its earlier one."""
    items: list[Any] = pickle.loads(flat) if isinstance(flat, bytes) else flat  # pickled by `sink._encode`
    fr_ids: dict[Any, str] = {}  # str(uuid) is slow: once per flow run
    out: list[tuple[Any, ...]] = []
    add = out.append
    dumps = json.dumps
    i, end = 0, len(items)
    while i < end:
        rid, name, task_name, dkey, task_key, fr, tags, run_count, start, stop, cache_key, inputs, n_hist, n = \
            items[i:i + HEAD]
        i += HEAD
        states = items[i:i + STATE * n]
        i += STATE * n
        fs = None if fr is None else fr_ids.get(fr)
        if fs is None and fr is not None:
            fs = fr_ids[fr] = str(fr)
        t, sname, msg, ts, ref = states[-STATE:]
        add((_uuid_text(rid) if rid.__class__ is int else str(rid), f"{task_name}-{dkey}" if name is None else name,
             _tags(tags), run_count, start, stop,
             (stop - start) if start is not None and stop is not None else 0.0, t, sname, msg, ts,
             None if ref is None else Json(ref), now, task_key, str(dkey), None if cache_key is None else str(cache_key),
             fs, Json(dumps(jsonable(inputs))) if inputs else None, _history(states, n_hist)))
    return out


def task_run_rows(flat: list[Any] | bytes, now: float, rows: dict[str, dict[str, Any]]) -> None:
    """Add to `rows` (by id; a later row of a run replaces an earlier one) the task-run rows of a flat encoding."""
    for v in task_run_values(flat, now):
        rows[v[0]] = dict(zip(TASK_RUN_COLUMNS, v))
