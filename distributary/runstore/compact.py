"""Task runs on their way to the run store, compact: one flat list per batch, made where the run records live
(`compact_task_runs`, cheap), made rows where they are written (`task_run_blocks`, in the writer process when there
is one). Also the JSON values as the store holds them (`Json`, `jsonable`, `result_ref_row`). No SQLAlchemy here."""
from __future__ import annotations

import json
import operator
import pickle
from collections.abc import Iterable
from typing import Any

from ..states import StateType


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


class Json(str):
    """A JSON column value already encoded (the sink encodes hot columns itself, faster than `json.dumps`)."""
    __slots__ = ()


def jsonable(value: Any) -> Any:
    """`value` if JSON can hold it, else a JSON-safe copy (objects become their repr)."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return json.loads(json.dumps(value, default=repr))


# ---------------------------------------------------------------------------------------------------------------
# The encoding --------------------------------------------------------------------------------------------------
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


def compact_fanout(fan: Any, lo: int, hi: int | None = None, starts: Any = None, ends: Any = None) -> list[Any]:
    """The flat encoding of runs of a compact `.map()` (`engine.fanout.Fanout`, read for its fields; no record of
    them exists): with `starts` and `ends`, runs `lo`, `lo + 1`, ... ran Running then Completed at those times;
    without them, runs `lo` to `hi` are still Pending."""
    out: list[Any] = []
    ext = out.extend
    spec, pending = fan.spec, fan.pending
    name, key, flow_run_id, tags = spec.name, spec.task_key, fan.flow_run_id, fan.tags
    base, key0 = fan.base + lo, fan.key0 + lo
    ptype, pname, pts = pending.type._value_, pending.name, pending.ts
    pmsg = None if pending.message is None else str(pending.message)
    if ends is None:
        for j in range((hi or lo) - lo):
            ext((base + j, None, name, key0 + j, key, flow_run_id, tags, 0, None, None, None, None, 1, 1,
                 ptype, pname, pmsg, pts, None))
        return out
    running, completed = StateType.RUNNING._value_, StateType.COMPLETED._value_
    for j, (start, end) in enumerate(zip(starts, ends)):
        ext((base + j, None, name, key0 + j, key, flow_run_id, tags, 1, start, end, None, None, 3, 3,
             ptype, pname, pmsg, pts, None, running, "Running", None, start, None, completed, "Completed", None, end,
             None))
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


def _template(key: tuple[Any, ...], count: int) -> str | None:
    """The history template of `count` states whose (types, names, messages, references) are `key`; None if one
    has a message or a reference."""
    template = _templates.get(key)
    if template is None and key[2 * count:].count(None) == 2 * count:
        template = "[" + ", ".join(json.dumps([t, n, None]).replace("%", "%%")[:-1] + ", %.7f]"
                                   for t, n in zip(key[:count], key[count:2 * count])) + "]"
        if len(_templates) < 1_000:
            _templates[key] = template
    return template


def _history(states: list[Any], count: int) -> Json:
    """The history column (JSON) of the first `count` states of a flat state list."""
    end = STATE * count
    # Per sequence of (type, name) with no message and no result reference (nearly every run of a .map()), a
    # template made once, filled with the timestamps: epoch seconds of this era with 7 decimals are exact (17
    # digits) and format faster than repr. The key holds the messages and references, so a template is only
    # found for a sequence without any.
    key = (*states[0:end:STATE], *states[1:end:STATE], *states[2:end:STATE], *states[4:end:STATE])
    template = _template(key, count)
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


# ---------------------------------------------------------------------------------------------------------------
# The rows of a .map() by column ----------------------------------------------------------------------------------
# Nearly every run of a .map() chunk has the same shape (the same states, without messages or result references),
# and most columns hold one value for all of them (the task, the flow run, the tags, the state). Such runs are
# decoded column by column from strided slices of the flat list (C loops, not one Python step per field), and the
# values they share are bound once per statement: about half the writer's work per row.
Block = tuple[dict[str, Any], tuple[str, ...], list[tuple[Any, ...]]]
COLUMNAR_MIN = 8  # runs of one shape from which they are decoded by column
_MASK32 = 0xFFFFFFFF


def task_run_blocks(flat: list[Any] | bytes, now: float) -> list[Block]:
    """The task-run rows of a flat encoding (or of its pickle) as blocks, in order: (the values every row of the
    block has, {column: value}; the other columns; the rows, tuples of those columns). A run appears once."""
    items: list[Any] = pickle.loads(flat) if isinstance(flat, bytes) else flat  # pickled by `sink._encode`
    blocks: list[Block] = []
    at, end = 0, len(items)
    while at < end:
        stop, width = _same_shape(items, at)
        got = _by_column(items[at:stop], width, now) if (stop - at) // width >= COLUMNAR_MIN else None
        if got is not None:
            blocks.append(got)
        else:
            rows = task_run_values(items[at:stop], now)
            if blocks and not blocks[-1][0]:
                blocks[-1][2].extend(rows)
            else:
                blocks.append(({}, TASK_RUN_COLUMNS, rows))
        at = stop
    return blocks


def _same_shape(items: list[Any], at: int) -> tuple[int, int]:
    """(where the runs from `at` that have as many states as the one at `at` end, their width in `items`)."""
    n_hist, n = items[at + HEAD - 2], items[at + HEAD - 1]
    width = HEAD + STATE * n
    # the first runs of the shape start every `width` items: these slices are right up to the first other shape
    ns, hs = items[at + HEAD - 1::width], items[at + HEAD - 2::width]
    if ns.count(n) == len(ns) and hs.count(n_hist) == len(hs):
        return len(items), width
    k = next(j for j, (a, b) in enumerate(zip(ns, hs)) if a != n or b != n_hist)
    return at + k * width, width


def _one(column: list[Any]) -> bool:
    return column.count(column[0]) == len(column)


def _by_column(items: list[Any], width: int, now: float) -> Block | None:
    """The block of runs of one shape (`width` items each), or None if their states differ in type or name, have
    a message or a result reference, or times that are not this era's epoch seconds."""
    n_hist, n = items[HEAD - 2], items[HEAD - 1]
    key: list[Any] = []
    for field in (0, 1, 2, 4):  # type, name, message, result reference of each state
        for j in range(n):
            column = items[HEAD + STATE * j + field::width]
            if not _one(column):
                return None
            key.append(column[0])
    if key[2 * n:].count(None) != 2 * n:
        return None
    template = _template((*key[:n_hist], *key[n:n + n_hist], *key[2 * n:2 * n + n_hist],
                          *key[3 * n:3 * n + n_hist]), n_hist) if n_hist else "[]"
    if template is None:
        return None
    times = [items[HEAD + STATE * j + 3::width] for j in range(n)]
    for ts in times:
        if set(map(type, ts)) != {float} or min(ts) < 1e9 or max(ts) >= 1e10:
            return None
    shared: dict[str, Any] = {}
    columns: dict[str, list[Any]] = {}

    def put(name: str, values: list[Any], conv: Any = None) -> None:
        if _one(values):
            shared[name] = values[0] if conv is None else conv(values[0])
        else:
            columns[name] = values if conv is None else [conv(v) for v in values]

    ids = items[0::width]
    if set(map(type, ids)) == {int} and min(ids) >> 32 == max(ids) >> 32:  # one head: a map's consecutive ids
        head = _uuid_text(ids[0])[:-8]
        columns["id"] = [f"{head}{v & _MASK32:08x}" for v in ids]
    else:
        columns["id"] = [_uuid_text(v) if v.__class__ is int else str(v) for v in ids]
    names, task_names, dkeys = items[1::width], items[2::width], items[3::width]
    if names.count(None) == len(names) and _one(task_names):
        task_name = task_names[0]
        columns["name"] = [f"{task_name}-{d}" for d in dkeys]
    else:
        columns["name"] = [f"{t}-{d}" if m is None else m for m, t, d in zip(names, task_names, dkeys)]
    put("tags", items[6::width], _tags)
    put("run_count", items[7::width])
    start, stop = items[8::width], items[9::width]
    columns["start_time"], columns["end_time"] = start, stop
    if None in start or None in stop:
        columns["total_run_time"] = [0.0 if a is None or b is None else b - a for a, b in zip(start, stop)]
    else:
        columns["total_run_time"] = list(map(operator.sub, stop, start))
    shared.update(state_type=key[n - 1], state_name=key[2 * n - 1], state_message=None, result_ref=None,
                  created=now)
    columns["state_ts"] = times[n - 1]
    put("task_key", items[4::width])
    columns["dynamic_key"] = list(map(str, dkeys))
    put("cache_key", items[10::width], text_or_none)
    put("flow_run_id", items[5::width], text_or_none)
    put("task_inputs", items[11::width], _inputs)
    columns["state_history"] = [template % t for t in zip(*times[:n_hist])] if n_hist else ["[]"] * len(ids)
    return shared, tuple(columns), list(zip(*columns.values()))


def text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _inputs(value: Any) -> str | None:
    return json.dumps(jsonable(value)) if value else None
