"""Output for the CLI: Rich tables for people, `--output json` for scripts, one-line errors (exit code 1)."""
from __future__ import annotations

import contextlib
import datetime as dt
import enum
import json
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import typer

OutputOpt = typer.Option("table", "--output", "-o", help="table (for people) or json (for scripts)")


class CliFailure(Exception):
    """A failed operation: its message is printed on one line and the exit code is 1."""


def _default(o: Any) -> Any:
    if isinstance(o, (dt.datetime, dt.date)):
        return o.isoformat()
    if isinstance(o, dt.timedelta):
        return o.total_seconds()
    if isinstance(o, (uuid.UUID, enum.Enum)):
        return str(o.value if isinstance(o, enum.Enum) else o)
    if hasattr(o, "model_dump"):
        return o.model_dump(mode="json")
    return str(o)


def emit_json(data: Any) -> None:
    if isinstance(data, list):
        data = [d.model_dump(mode="json") if hasattr(d, "model_dump") else d for d in data]
    elif hasattr(data, "model_dump"):
        data = data.model_dump(mode="json")
    typer.echo(json.dumps(data, default=_default, indent=2))


def fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dt.timedelta):
        return f"{value.total_seconds():.3f}s"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*[fmt(v) for v in r])
    Console().print(t)


def details(title: str, obj: Any) -> None:
    from rich.console import Console
    from rich.panel import Panel
    from rich.pretty import Pretty

    data = obj.model_dump(mode="json") if hasattr(obj, "model_dump") else obj
    Console().print(Panel(Pretty(data), title=title))


def check_output(output: str) -> str:
    if output not in ("table", "json"):
        raise typer.BadParameter(f"--output must be table or json, not {output!r}")
    return output


@contextlib.contextmanager
def fail_on_errors() -> Iterator[None]:
    """Our errors (not found, bad settings, unreachable store) become one line on stderr and exit code 1."""
    from ..errors import DistributaryError

    try:
        yield
    except (DistributaryError, CliFailure) as exc:
        typer.echo(f"Error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", err=True)
        raise SystemExit(1) from None


def client() -> Any:
    from ..client.orchestration import get_client

    return get_client(sync_client=True)
