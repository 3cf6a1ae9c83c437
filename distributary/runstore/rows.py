"""Run records to run-store rows: flow runs, states and logs as row dicts; task runs in two steps, a compact flat
encoding made where the records live (`compact_task_runs`, cheap, one list) and the rows made from it where they
are written (`task_run_rows`, in the writer process when there is one, see `writer_process.py`)."""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from typing import Any

from ..states import StateType
from .batch import Json, flow_id_for, result_ref_row

_TYPE_NAMES = {t: t.value for t in StateType}


def _jsonable(value: Any) -> Any:
    """`value` if JSON can hold it, else a JSON-safe copy (objects become their repr)."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return json.loads(json.dumps(value, default=repr))


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def state_row(run_id: str, state: Any) -> dict[str, Any]:
    ref = state.result_ref
    return {"run_id": run_id, "type": _TYPE_NAMES[state.type], "name": state.name,
            "message": None if state.message is None else str(state.message), "timestamp": state.ts,
            "result_ref": None if ref is None else result_ref_row(ref)}


def flow_run_row(run: Any, state: Any, now: float) -> dict[str, Any]:
    start, end = run.start_ts, run.end_ts
    return {"id": str(run.id), "name": run.name, "tags": sorted(run.tags or ()), "run_count": run.run_count,
            "start_time": start, "end_time": end,
            "total_run_time": (end - start) if start is not None and end is not None else 0.0,
            "state_type": _TYPE_NAMES[state.type], "state_name": state.name, "state_message": _text(state.message),
            "state_ts": state.ts, "result_ref": result_ref_row(state.result_ref), "created": now,
            "flow_id": flow_id_for(run.flow_name), "flow_name": run.flow_name, "flow_version": run.flow_version,
            "parameters": _jsonable(run.parameters or {}),
            "parent_flow_run_id": _text(run.parent_flow_run_id),
            "parent_task_run_id": _text(getattr(run, "parent_task_run_id", None)),
            "expected_start_time": getattr(run, "expected_start_ts", None) or run.state_history[0].ts}


def log_row(rec: dict[str, Any], task_flow: dict[Any, str]) -> dict[str, Any]:
    run_id, kind = rec.get("run_id"), rec.get("run_kind")
    task_run_id = flow_run_id = None
    if kind == "task":
        task_run_id = run_id
        flow_run_id = rec.get("flow_run_id") or task_flow.get(run_id)
    elif kind == "flow":
        flow_run_id = run_id
    msg = str(rec.get("msg", ""))
    if rec.get("exc_text"):
        msg = f"{msg}\n{rec['exc_text']}"
    return {"flow_run_id": flow_run_id, "task_run_id": task_run_id, "name": str(rec.get("name", "")),
            "level": int(rec.get("levelno", logging.INFO)), "message": msg,
            "timestamp": float(rec.get("created") or time.time())}


# -- task runs, compact --------------------------------------------------------------------------------------------
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


def count_compact(flat: list[Any]) -> int:
    """How many task runs a flat encoding holds."""
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
    if states[2:end:STATE].count(None) == count and states[4:end:STATE].count(None) == count:
        times = states[3:end:STATE]
        if all(t.__class__ is float for t in times):
            key = (*states[0:end:STATE], *states[1:end:STATE])
            template = _templates.get(key)
            if template is None:
                template = "[" + ", ".join(json.dumps([t, n, None]).replace("%", "%%")[:-1] + ", %r]"
                                           for t, n in zip(key[:count], key[count:])) + "]"
                if len(_templates) < 1_000:
                    _templates[key] = template
            return Json(template % tuple(times))
    items = []
    for j in range(0, end, STATE):
        t, name, msg, ts, ref = states[j:j + STATE]
        item = _repr_encoder.encode([t, name, msg, ts])
        items.append(item if ref is None else f"{item[:-1]}, {ref}]")
    return Json("[" + ", ".join(items) + "]")


def _uuid_text(value: int) -> str:
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def task_run_rows(flat: list[Any], now: float, rows: dict[str, dict[str, Any]]) -> None:
    """Add to `rows` (by id; a later row of a run replaces an earlier one) the task-run rows of a flat encoding."""
    fr_ids: dict[Any, str] = {}  # str(uuid) is slow: once per flow run
    i, end = 0, len(flat)
    while i < end:
        rid, name, task_name, dkey, task_key, fr, tags, run_count, start, stop, cache_key, inputs, n_hist, n = \
            flat[i:i + HEAD]
        i += HEAD
        states = flat[i:i + STATE * n]
        i += STATE * n
        sid = _uuid_text(rid) if rid.__class__ is int else str(rid)
        fs = None if fr is None else fr_ids.get(fr)
        if fs is None and fr is not None:
            fs = fr_ids[fr] = str(fr)
        t, sname, msg, ts, ref = states[-STATE:]
        # one dict literal, in the column order of the other rows (a statement groups rows by their columns)
        rows[sid] = {"id": sid, "name": f"{task_name}-{dkey}" if name is None else name, "tags": _tags(tags),
                     "run_count": run_count, "start_time": start, "end_time": stop,
                     "total_run_time": (stop - start) if start is not None and stop is not None else 0.0,
                     "state_type": t, "state_name": sname, "state_message": msg, "state_ts": ts,
                     "result_ref": None if ref is None else Json(ref), "created": now, "task_key": task_key, "dynamic_key": str(dkey),
                     "cache_key": None if cache_key is None else str(cache_key), "flow_run_id": fs,
                     "task_inputs": _jsonable(inputs) if inputs else None, "state_history": _history(states, n_hist)}
