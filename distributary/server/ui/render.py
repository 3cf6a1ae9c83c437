"""Turning run-store rows into what the templates show: the Jinja environment (autoescape on), Markdown rendered
with raw HTML disabled, artifacts, times and durations."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import jinja2
from markdown_it import MarkdownIt
from markupsafe import Markup

HERE = Path(__file__).parent
TABLE_ROW_LIMIT = 1000  # rows of a table artifact shown on a page
LEVELS = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    # "commonmark" with html=False: a <script> or an onerror= attribute in a report is shown as text. Links go
    # through markdown-it's validateLink, which refuses javascript:, vbscript:, file: and data: (but images).
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")


def markdown(text: Any) -> Markup:
    return Markup(_markdown().render("" if text is None else str(text)))


def ts(value: float | None) -> str:
    """A UNIX time as a UTC date and time (to the second)."""
    if value is None:
        return ""
    return dt.datetime.fromtimestamp(float(value), tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def iso(value: float | None) -> str:
    if value is None:
        return ""
    return dt.datetime.fromtimestamp(float(value), tz=dt.timezone.utc).isoformat()


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = float(seconds)
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.1f} s"
    m, s = divmod(int(s), 60)
    if m < 60:
        return f"{m}m {s}s"
    h, m = divmod(m, 60)
    return f"{h}h {m}m"


def run_duration(row: Any) -> str:
    if row.start_time is None:
        return ""
    if row.end_time is not None:
        return duration(row.end_time - row.start_time)
    return duration(row.total_run_time) if row.total_run_time else ""


def level_name(level: int) -> str:
    return LEVELS.get(int(level), str(level))


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def table(data: Any) -> tuple[list[str], list[list[Any]], int]:
    """A table artifact's data (list of dicts, dict of lists or list of lists) as (columns, rows, total rows);
    at most TABLE_ROW_LIMIT rows."""
    if isinstance(data, dict):
        cols = [str(k) for k in data]
        n = max((len(v) for v in data.values() if isinstance(v, list)), default=0)
        rows = [[(data[k][i] if isinstance(data[k], list) and i < len(data[k]) else None) for k in data]
                for i in range(min(n, TABLE_ROW_LIMIT))]
        return cols, rows, n
    if isinstance(data, list) and all(isinstance(r, dict) for r in data):
        cols = []
        for r in data[:TABLE_ROW_LIMIT]:
            cols += [str(k) for k in r if str(k) not in cols]
        return cols, [[r.get(c) for c in cols] for r in data[:TABLE_ROW_LIMIT]], len(data)
    if isinstance(data, list):
        rows = [list(r) if isinstance(r, (list, tuple)) else [r] for r in data[:TABLE_ROW_LIMIT]]
        width = max((len(r) for r in rows), default=0)
        return [str(i) for i in range(width)], rows, len(data)
    return ["value"], [[data]], 1


def safe_image_url(url: Any) -> str | None:
    """An image artifact's URL if a browser may load it as an image (http, https, a data: image or a path)."""
    text = str(url or "").strip()
    low = text.lower()
    if low.startswith(("http://", "https://", "/", "data:image/")) and not low.startswith("//"):
        return text
    return None


def progress(value: Any) -> float:
    try:
        return max(0.0, min(100.0, float(value)))
    except (TypeError, ValueError):
        return 0.0


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


@cache
def asset(name: str) -> str:
    """The URL of a static file, with a digest of its content so that browsers never keep a stale copy."""
    digest = hashlib.sha256((HERE / "static" / name).read_bytes()).hexdigest()[:12]
    return f"/ui-static/{name}?v={digest}"


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(ts=ts, iso=iso, duration=duration, run_duration=run_duration, level_name=level_name,
                       pretty_json=pretty_json, markdown=markdown, cell=cell, progress=progress)
    env.globals.update(table=table, safe_image_url=safe_image_url, asset=asset)
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)
