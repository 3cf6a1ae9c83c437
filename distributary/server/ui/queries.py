"""The reads the web UI needs beyond the run store's `RunStorage` interface: counts grouped by state and by task,
pages of runs with their total, and timelines aggregated into buckets on the database side, so that a page about
a flow run with 10^5 task runs moves a few hundred numbers, never 10^5 rows."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from ...runstore.models import TABLES
from ...states import FINAL_TYPES

flow_t, flow_run_t, task_run_t = TABLES["flow"], TABLES["flow_run"], TABLES["task_run"]
state_t, log_t, artifact_t = TABLES["run_state"], TABLES["log"], TABLES["artifact"]

# The order states are shown in: what needs attention first.
STATE_ORDER = ("FAILED", "CRASHED", "CANCELLED", "CANCELLING", "PAUSED", "RUNNING", "PENDING", "SCHEDULED",
               "COMPLETED")
FINAL = frozenset(t.value for t in FINAL_TYPES)
MAX_BUCKETS = 600
# When a flow run started, or was due to, or was made: what the lists sort and filter by.
run_start = sa.func.coalesce(flow_run_t.c.start_time, flow_run_t.c.expected_start_time, flow_run_t.c.created)
MAX_LANES = 30


def _conn(storage: Any) -> sa.Connection:
    """A reading connection (on SQLite it does not take the write lock: see `runstore.db`)."""
    return storage.engine.connect().execution_options(distributary_read=True)


def _bucket(storage: Any, expr: Any) -> Any:
    """The integer part of a non-negative `expr`: SQLite's CAST truncates, PostgreSQL's rounds (so floor first)."""
    if storage.dialect == "postgresql":
        expr = sa.func.floor(expr)
    return sa.cast(expr, sa.Integer)


def ordered_states(counts: dict[str, int]) -> list[tuple[str, int]]:
    """`counts` by state type in STATE_ORDER (unknown or missing types last)."""
    known = [(s, counts[s]) for s in STATE_ORDER if counts.get(s)]
    return known + sorted((s, n) for s, n in counts.items() if s not in STATE_ORDER and n)


# -- flow runs ----------------------------------------------------------------------------------------------
@dataclass
class FlowRunQuery:
    """The flow-runs list's filters, as given in the page's query string."""
    flow: str = ""
    state: str = ""
    tag: str = ""
    since: float | None = None
    until: float | None = None
    parent: str = ""

    def clauses(self) -> list[Any]:
        c = flow_run_t.c
        out: list[Any] = []
        if self.flow:
            out.append(c.flow_name == self.flow)
        if self.state:
            out.append(c.state_type == self.state.upper())
        if self.tag:
            out.append(sa.cast(c.tags, sa.Text).like(f'%"{_like_escape(self.tag)}"%', escape="\\"))
        if self.since is not None:
            out.append(run_start >= self.since)
        if self.until is not None:
            out.append(run_start <= self.until)
        if self.parent:
            out.append(c.parent_flow_run_id == self.parent)
        return out


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def flow_run_page(storage: Any, query: FlowRunQuery, limit: int = 50, offset: int = 0) -> tuple[list[Any], int]:
    """One page of flow runs, newest first, and how many match in all."""
    c = flow_run_t.c
    where = query.clauses()
    cols = [c.id, c.name, c.flow_name, c.tags, c.state_type, c.state_name, c.start_time, c.end_time,
            c.total_run_time, c.expected_start_time, c.created, c.parent_flow_run_id]
    q = (sa.select(*cols).where(*where).order_by(run_start.desc(), c.id)
         .limit(limit).offset(offset))
    return _page(storage, flow_run_t, where, q)


def _page(storage: Any, table: Any, where: list[Any], query: Any) -> tuple[list[Any], int]:
    """The rows of `query` (one page) and how many rows of `table` match `where` in all."""
    with _conn(storage) as conn:
        total = int(conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar() or 0)
        return list(conn.execute(query)), total


def _by_id(storage: Any, table: Any, ident: str) -> Any | None:
    with _conn(storage) as conn:
        return conn.execute(sa.select(table).where(table.c.id == ident)).first()


def flow_run_row(storage: Any, flow_run_id: str) -> Any | None:
    return _by_id(storage, flow_run_t, flow_run_id)


def flow_names(storage: Any) -> list[str]:
    with _conn(storage) as conn:
        return [r[0] for r in conn.execute(sa.select(flow_t.c.name).order_by(flow_t.c.name))]


def flow_run_state_counts(storage: Any, since: float | None = None) -> dict[str, int]:
    c = flow_run_t.c
    q = sa.select(c.state_type, sa.func.count()).group_by(c.state_type)
    if since is not None:
        q = q.where(run_start >= since)
    with _conn(storage) as conn:
        return {str(s or "PENDING"): int(n) for s, n in conn.execute(q)}


@dataclass
class Histogram:
    """Counts by state in equal time buckets from `start` to `end`."""
    start: float
    end: float
    buckets: int
    counts: list[dict[str, int]] = field(default_factory=list)

    @property
    def width(self) -> float:
        return (self.end - self.start) / self.buckets

    def peak(self) -> int:
        return max((sum(b.values()) for b in self.counts), default=0)


def flow_runs_over_time(storage: Any, since: float, until: float, buckets: int = 48) -> Histogram:
    """Flow runs by state, bucketed by their start time (the dashboard's chart)."""
    c = flow_run_t.c
    start = run_start
    width = (until - since) / buckets
    b = _bucket(storage, (start - since) / width)
    q = (sa.select(b.label("b"), c.state_type, sa.func.count()).where(start >= since, start <= until)
         .group_by("b", c.state_type))
    hist = Histogram(since, until, buckets, [{} for _ in range(buckets)])
    with _conn(storage) as conn:
        for i, s, n in conn.execute(q):
            i = min(max(int(i), 0), buckets - 1)
            hist.counts[i][str(s or "PENDING")] = hist.counts[i].get(str(s or "PENDING"), 0) + int(n)
    return hist


def recent_failures(storage: Any, limit: int = 10) -> list[Any]:
    c = flow_run_t.c
    q = (sa.select(c.id, c.name, c.flow_name, c.state_type, c.state_name, c.state_message, c.start_time, c.end_time)
         .where(c.state_type.in_(["FAILED", "CRASHED"])).order_by(sa.func.coalesce(c.end_time, c.created).desc())
         .limit(limit))
    with _conn(storage) as conn:
        return list(conn.execute(q))


def subflow_runs(storage: Any, flow_run_id: str, limit: int = 100) -> list[Any]:
    c = flow_run_t.c
    q = (sa.select(c.id, c.name, c.flow_name, c.state_type, c.state_name, c.start_time)
         .where(c.parent_flow_run_id == flow_run_id).order_by(c.created).limit(limit))
    with _conn(storage) as conn:
        return list(conn.execute(q))


def flows_with_counts(storage: Any) -> list[dict[str, Any]]:
    """Every flow with its number of runs and its latest run."""
    c = flow_run_t.c
    latest = sa.func.max(run_start)
    q = sa.select(c.flow_id, sa.func.count().label("runs"), latest.label("latest")).group_by(c.flow_id)
    with _conn(storage) as conn:
        stats = {r.flow_id: r for r in conn.execute(q)}
        flows = list(conn.execute(sa.select(flow_t).order_by(flow_t.c.name)))
        counts: dict[str, dict[str, int]] = {}
        for fid, s, n in conn.execute(sa.select(c.flow_id, c.state_type, sa.func.count()).group_by(c.flow_id,
                                                                                                   c.state_type)):
            counts.setdefault(fid, {})[str(s or "PENDING")] = int(n)
    return [{"id": f.id, "name": f.name, "created": f.created, "runs": stats[f.id].runs if f.id in stats else 0,
             "latest": stats[f.id].latest if f.id in stats else None,
             "states": ordered_states(counts.get(f.id, {}))} for f in flows]


# -- task runs of one flow run ------------------------------------------------------------------------------
def task_run_counts(storage: Any, flow_run_id: str) -> dict[str, Any]:
    """Task runs of a flow run counted by state, by task, and by both (one GROUP BY)."""
    c = task_run_t.c
    q = (sa.select(c.task_key, c.state_type, sa.func.count()).where(c.flow_run_id == flow_run_id)
         .group_by(c.task_key, c.state_type))
    by_state: dict[str, int] = {}
    by_task: dict[str, dict[str, int]] = {}
    with _conn(storage) as conn:
        for key, s, n in conn.execute(q):
            s = str(s or "PENDING")
            by_state[s] = by_state.get(s, 0) + int(n)
            by_task.setdefault(key, {})[s] = int(n)
    tasks: list[dict[str, Any]] = [{"task_key": k, "name": task_label(k), "total": sum(v.values()), "states": v}
                                   for k, v in by_task.items()]
    tasks.sort(key=lambda t: (-t["total"], t["task_key"]))
    return {"total": sum(by_state.values()), "by_state": dict(ordered_states(by_state)), "by_task": tasks,
            "states": [s for s, _ in ordered_states(by_state)]}


def task_label(task_key: str) -> str:
    """A task key (`module.qualname` or `module.qualname-hash`) as a short name."""
    return task_key.rsplit(".", 1)[-1]


_STARTED = sa.func.coalesce(task_run_t.c.start_time, task_run_t.c.created)  # not started yet: when it was made
TASK_SORTS = {"start": (_STARTED.asc(),), "-start": (_STARTED.desc(),), "name": (task_run_t.c.name.asc(),),
              "-duration": (task_run_t.c.total_run_time.desc(),)}


def task_run_page(storage: Any, flow_run_id: str, state: str = "", task_key: str = "", limit: int = 100,
                  offset: int = 0, sort: str = "start") -> tuple[list[Any], int]:
    """One page of a flow run's task runs and how many match (the table pages on the server)."""
    c = task_run_t.c
    where = [c.flow_run_id == flow_run_id]
    if state:
        where.append(c.state_type == state.upper())
    if task_key:
        where.append(c.task_key == task_key)
    order = TASK_SORTS.get(sort, TASK_SORTS["start"])
    q = (sa.select(c.id, c.name, c.task_key, c.state_type, c.state_name, c.start_time, c.end_time,
                   c.total_run_time, c.run_count).where(*where).order_by(*order, c.id).limit(limit).offset(offset))
    return _page(storage, task_run_t, where, q)


def task_run_row(storage: Any, task_run_id: str) -> Any | None:
    return _by_id(storage, task_run_t, task_run_id)


def subflow_of_task_run(storage: Any, task_run_id: str) -> Any | None:
    c = flow_run_t.c
    with _conn(storage) as conn:
        return conn.execute(sa.select(c.id, c.name, c.state_type).where(c.parent_task_run_id == task_run_id)).first()


@dataclass
class Timeline:
    """Task runs of a flow run as lanes (one per task) of buckets; each cell counts by state the task runs
    that were running during that bucket."""
    start: float
    end: float
    buckets: int
    lanes: list[dict[str, Any]]
    total: int

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "buckets": self.buckets, "lanes": self.lanes,
                "total": self.total}


def timeline_span(storage: Any, flow_run_id: str) -> tuple[float, float] | None:
    c = task_run_t.c
    q = sa.select(sa.func.min(c.start_time), sa.func.max(sa.func.coalesce(c.end_time, c.start_time)),
                  sa.func.count(c.start_time)).where(c.flow_run_id == flow_run_id)
    with _conn(storage) as conn:
        lo, hi, n = conn.execute(q).one()
    if not n:
        return None
    run = flow_run_row(storage, flow_run_id)
    if run is not None and not is_final(run.state_type):
        hi = max(float(hi), time.time())  # still running: the timeline reaches now
    return float(lo), float(hi)


def timeline(storage: Any, flow_run_id: str, start: float | None = None, end: float | None = None,
             buckets: int = 200) -> Timeline:
    """The timeline between `start` and `end` (default: the whole run) in `buckets` columns. The database groups
    task runs by (task, first bucket, last bucket, state); only those groups (a few thousand at most) are spread
    over the columns here."""
    buckets = max(1, min(int(buckets), MAX_BUCKETS))
    if start is None or end is None:
        span = timeline_span(storage, flow_run_id)
        if span is None:
            return Timeline(0.0, 0.0, buckets, [], 0)
        start, end = span
    if end <= start:
        end = start + 1e-3
    width = (end - start) / buckets
    c = task_run_t.c
    now = time.time()
    stop = sa.func.coalesce(c.end_time, now)
    first = _bucket(storage, (c.start_time - start) / width).label("first")  # < 0: began before the window
    last = _bucket(storage, (stop - start) / width).label("last")
    q = (sa.select(c.task_key, first, last, c.state_type, sa.func.count())
         .where(c.flow_run_id == flow_run_id, c.start_time.is_not(None), c.start_time <= end, stop >= start)
         .group_by(c.task_key, "first", "last", c.state_type))
    lanes: dict[str, dict[str, Any]] = {}
    total = 0
    with _conn(storage) as conn:
        for key, b0, b1, s, n in conn.execute(q):
            n = int(n)
            total += n
            lane = lanes.get(key)
            if lane is None:
                lane = lanes[key] = {"task_key": key, "name": task_label(key), "total": 0, "cells": {}}
            lane["total"] += n
            s = str(s or "PENDING")
            for i in range(max(int(b0), 0), min(int(b1), buckets - 1) + 1):
                cell = lane["cells"].setdefault(i, {})
                cell[s] = cell.get(s, 0) + n
    top = sorted(lanes.values(), key=lambda ln: (-ln["total"], ln["task_key"]))
    if len(top) > MAX_LANES:  # the rest share one lane
        cells: dict[int, dict[str, int]] = {}
        rest = {"task_key": "", "name": f"{len(top) - MAX_LANES + 1} other tasks", "total": 0, "cells": cells}
        for ln in top[MAX_LANES - 1:]:
            rest["total"] += ln["total"]
            for i, cell in ln["cells"].items():
                into = cells.setdefault(i, {})
                for s, n in cell.items():
                    into[s] = into.get(s, 0) + n
        top = top[:MAX_LANES - 1] + [rest]
    out = [{"task_key": ln["task_key"], "name": ln["name"], "total": ln["total"],
            "cells": [[i, cell] for i, cell in sorted(ln["cells"].items())]} for ln in top]
    return Timeline(start, end, buckets, out, total)


# Up to this many task runs the run graph draws each one; beyond, one node per task with the edges counted.
GRAPH_MAX_RUNS = 300
GRAPH_MAX_TASKS = 60


def _upstream_ids(inputs: Any) -> set[str]:
    """The task runs a run's `task_inputs` ({parameter: [{"input_type": "task_run", "id": ...}]}) name."""
    out: set[str] = set()
    for items in inputs.values() if isinstance(inputs, dict) else ():
        for item in items if isinstance(items, list) else ():
            if isinstance(item, dict) and item.get("input_type") == "task_run" and item.get("id"):
                out.add(str(item["id"]))
    return out


def run_graph(storage: Any, flow_run_id: str) -> dict[str, Any]:
    """The dependency graph of a flow run's task runs (edges from their recorded task-run inputs). Up to
    GRAPH_MAX_RUNS task runs: a node per task run (`mode` "task_runs"). Beyond: a node per task with its counts by
    state, and an edge per (upstream task, downstream task) counting the downstream runs that took an input from a
    run of the upstream task (`mode` "tasks"), so a 10^5-task run is a handful of nodes. Edges only join task runs
    of this flow run; a node's index in `nodes` is its id in `edges` ([from, to, count])."""
    c = task_run_t.c
    mine = c.flow_run_id == flow_run_id
    with _conn(storage) as conn:
        total = int(conn.execute(sa.select(sa.func.count()).where(mine)).scalar() or 0)
        if total <= GRAPH_MAX_RUNS:
            rows = list(conn.execute(sa.select(c.id, c.name, c.task_key, c.state_type, c.task_inputs)
                                     .where(mine).order_by(c.created, c.id)))
            index = {r.id: i for i, r in enumerate(rows)}
            nodes = [{"id": r.id, "name": r.name, "task_key": r.task_key, "state": str(r.state_type or "PENDING")}
                     for r in rows]
            edges = [[index[u], i, 1] for i, r in enumerate(rows)
                     for u in sorted(_upstream_ids(r.task_inputs)) if u in index]
            return {"mode": "task_runs", "total": total, "nodes": nodes, "edges": edges, "hidden": 0}
        # only rows that name a task run are decoded; the text form skips the JSON decoding of the others
        linked = list(conn.execute(sa.select(c.task_key, sa.cast(c.task_inputs, sa.Text))
                                   .where(mine, sa.cast(c.task_inputs, sa.Text).like('%"task_run"%'))))
        key_of = dict(conn.execute(sa.select(c.id, c.task_key).where(mine)).all()) if linked else {}
    pairs: dict[tuple[str, str], int] = {}
    for down, text in linked:
        for up in {key_of.get(i) for i in _upstream_ids(json.loads(text))}:
            if up is not None:
                pairs[(up, down)] = pairs.get((up, down), 0) + 1
    by_task = task_run_counts(storage, flow_run_id)["by_task"]
    tasks = by_task[:GRAPH_MAX_TASKS]  # the largest first
    index = {t["task_key"]: i for i, t in enumerate(tasks)}
    nodes = [{"id": t["task_key"], "name": t["name"], "task_key": t["task_key"], "total": t["total"],
              "states": dict(ordered_states(t["states"]))} for t in tasks]
    edges = [[index[u], index[d], n] for (u, d), n in sorted(pairs.items()) if u in index and d in index]
    return {"mode": "tasks", "total": total, "nodes": nodes, "edges": edges, "hidden": len(by_task) - len(tasks)}


# -- states and logs ----------------------------------------------------------------------------------------
def flow_run_states(storage: Any, flow_run_id: str) -> list[Any]:
    q = (sa.select(state_t.c.type, state_t.c.name, state_t.c.message, state_t.c.timestamp)
         .where(state_t.c.run_id == flow_run_id).order_by(state_t.c.timestamp, state_t.c.id))
    with _conn(storage) as conn:
        return list(conn.execute(q))


def logs(storage: Any, flow_run_id: str | None = None, task_run_id: str | None = None, level: int = 0,
         after_id: int | None = None, limit: int = 200) -> list[Any]:
    """The newest `limit` logs of a run at `level` or above, oldest first; with `after_id`, the ones written
    after that log (the live tail)."""
    c = log_t.c
    where: list[Any] = [c.level >= level]
    if flow_run_id:
        where.append(c.flow_run_id == flow_run_id)
    if task_run_id:
        where.append(c.task_run_id == task_run_id)
    cols = (c.id, c.name, c.level, c.message, c.timestamp, c.task_run_id, task_run_t.c.name.label("task_name"))
    src = log_t.outerjoin(task_run_t, task_run_t.c.id == c.task_run_id)
    with _conn(storage) as conn:
        if after_id is not None:
            q = sa.select(*cols).select_from(src).where(*where, c.id > after_id).order_by(c.id).limit(limit)
            return list(conn.execute(q))
        q = sa.select(*cols).select_from(src).where(*where).order_by(c.id.desc()).limit(limit)
        return list(reversed(list(conn.execute(q))))


def artifacts_of(storage: Any, flow_run_id: str | None = None, task_run_id: str | None = None) -> list[Any]:
    c = artifact_t.c
    q = sa.select(artifact_t).order_by(c.created)
    if flow_run_id:
        q = q.where(c.flow_run_id == flow_run_id)
    if task_run_id:
        q = q.where(c.task_run_id == task_run_id)
    with _conn(storage) as conn:
        return list(conn.execute(q.limit(200)))


def artifact_keys(storage: Any, limit: int = 200, offset: int = 0) -> tuple[list[Any], int]:
    """Keyed artifacts, one row per key: its newest version and how many versions it has."""
    c = artifact_t.c
    newest = (sa.select(c.key, sa.func.max(c.created).label("created"), sa.func.count().label("versions"))
              .where(c.key.is_not(None)).group_by(c.key).subquery())
    q = (sa.select(c.id, c.key, c.type, c.description, c.flow_run_id, c.created, newest.c.versions)
         .join(newest, sa.and_(c.key == newest.c.key, c.created == newest.c.created))
         .order_by(c.created.desc()).limit(limit).offset(offset))
    with _conn(storage) as conn:
        total = int(conn.execute(sa.select(sa.func.count(sa.distinct(c.key)))).scalar() or 0)
        seen: set[str] = set()
        rows = []
        for r in conn.execute(q):
            if r.key not in seen:
                seen.add(r.key)
                rows.append(r)
    return rows, total


def artifact_versions(storage: Any, key: str) -> list[Any]:
    c = artifact_t.c
    with _conn(storage) as conn:
        return list(conn.execute(sa.select(artifact_t).where(c.key == key).order_by(c.created.desc()).limit(500)))


def artifact_row(storage: Any, artifact_id: str) -> Any | None:
    return _by_id(storage, artifact_t, artifact_id)


def is_final(state_type: str | None) -> bool:
    return state_type in FINAL
