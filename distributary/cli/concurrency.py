"""`distributary gcl create / ls / inspect / update / delete / enable / disable` (global concurrency limits and
rate limits) and `distributary concurrency-limit create / ls / inspect / reset / delete` (tag-based task-run
limits), as Prefect 3's `prefect gcl` and `prefect concurrency-limit`."""
from __future__ import annotations

from typing import Any

import typer

from ._output import OutputOpt, check_output, details, emit_json, table

gcl_app = typer.Typer(help="Global concurrency limits and rate limits.", no_args_is_help=True)
tag_app = typer.Typer(help="Tag-based task-run concurrency limits.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(gcl_app, name="gcl")
    app.add_typer(gcl_app, name="global-concurrency-limit", hidden=True)
    app.add_typer(tag_app, name="concurrency-limit")


def _storage() -> Any:
    from ..runstore import get_storage

    return get_storage()


@gcl_app.command("create")
def gcl_create(name: str, limit: int = typer.Option(..., "--limit", "-l", help="slots at once"),
               slot_decay_per_second: float = typer.Option(0.0, "--slot-decay-per-second",
                                                           help="slots given back per second (a rate limit)"),
               disable: bool = typer.Option(False, "--disable", help="create it inactive"),
               active_slots: int = typer.Option(0, "--active-slots"),
               denied_slots: int = typer.Option(0, "--denied-slots")) -> None:
    """Create a global concurrency limit (a rate limit with --slot-decay-per-second)."""
    if limit < 0 or slot_decay_per_second < 0:
        raise typer.BadParameter("--limit and --slot-decay-per-second must be >= 0")
    g = _storage().create_concurrency_limit(name, limit, active=not disable, active_slots=active_slots,
                                            denied_slots=denied_slots, slot_decay_per_second=slot_decay_per_second)
    typer.echo(f"Created global concurrency limit with name {g.name!r} and ID '{g.id}'. Run `distributary gcl "
               f"inspect {g.name}` to view details.")


@gcl_app.command("ls")
def gcl_ls(output: str = OutputOpt) -> None:
    """List global concurrency limits."""
    limits = _storage().read_concurrency_limits()
    if check_output(output) == "json":
        return emit_json(limits)
    table("Global concurrency limits", ["Name", "Limit", "Active slots", "Active", "Slot decay per second", "ID"],
          [(g.name, g.limit, g.active_slots, g.active, g.slot_decay_per_second, g.id) for g in limits])


@gcl_app.command("inspect")
def gcl_inspect(name: str, output: str = OutputOpt) -> None:
    """Show a global concurrency limit."""
    g = _storage().read_concurrency_limit(name)
    if check_output(output) == "json":
        return emit_json(g)
    details(f"Global concurrency limit {name}", g)


@gcl_app.command("update")
def gcl_update(name: str, limit: int | None = typer.Option(None, "--limit", "-l"),
               active_slots: int | None = typer.Option(None, "--active-slots"),
               slot_decay_per_second: float | None = typer.Option(None, "--slot-decay-per-second"),
               denied_slots: int | None = typer.Option(None, "--denied-slots"),
               enable: bool = typer.Option(False, "--enable"), disable: bool = typer.Option(False, "--disable")) -> None:
    """Change a global concurrency limit."""
    if enable and disable:
        raise typer.BadParameter("--enable and --disable exclude each other")
    values: dict[str, Any] = {"limit": limit, "active_slots": active_slots, "denied_slots": denied_slots,
                              "slot_decay_per_second": slot_decay_per_second}
    if enable or disable:
        values["active"] = enable
    values = {k: v for k, v in values.items() if v is not None}
    if not values:
        raise typer.BadParameter("nothing to update: give --limit, --active-slots, --slot-decay-per-second, "
                                 "--denied-slots, --enable or --disable")
    _storage().update_concurrency_limit(name, **values)
    typer.echo(f"Updated global concurrency limit with name {name!r}.")


@gcl_app.command("delete")
def gcl_delete(name: str) -> None:
    """Delete a global concurrency limit."""
    _storage().delete_concurrency_limit(name)
    typer.echo(f"Deleted global concurrency limit with name {name!r}.")


@gcl_app.command("enable")
def gcl_enable(name: str) -> None:
    """Make a limit limit again."""
    _storage().update_concurrency_limit(name, active=True)
    typer.echo(f"Enabled global concurrency limit with name {name!r}.")


@gcl_app.command("disable")
def gcl_disable(name: str) -> None:
    """Stop a limit from limiting (its holders keep their slots)."""
    _storage().update_concurrency_limit(name, active=False)
    typer.echo(f"Disabled global concurrency limit with name {name!r}.")


@tag_app.command("create")
def tag_create(tag: str, concurrency_limit: int) -> None:
    """At most CONCURRENCY_LIMIT task runs tagged TAG run at once (creates or updates the limit)."""
    if concurrency_limit < 0:
        raise typer.BadParameter("the limit must be >= 0")
    got, _ = _storage().create_tag_concurrency_limit(tag, concurrency_limit)
    typer.echo(f"Created concurrency limit with properties:\n    tag - {tag!r}\n    concurrency_limit - "
               f"{got.concurrency_limit}\n\nDelete the concurrency limit:\n    distributary concurrency-limit delete "
               f"{tag!r}\n\nInspect the concurrency limit:\n    distributary concurrency-limit inspect {tag!r}")


@tag_app.command("ls")
def tag_ls(limit: int = typer.Option(15, "--limit"), offset: int = typer.Option(0, "--offset"),
           output: str = OutputOpt) -> None:
    """List tag-based task-run limits."""
    got = _storage().read_tag_concurrency_limits(limit=limit, offset=offset)
    if check_output(output) == "json":
        return emit_json(got)
    table("Concurrency limits", ["Tag", "ID", "Concurrency limit", "Active task slots"],
          [(c.tag, c.id, c.concurrency_limit, len(c.active_slots)) for c in got])


@tag_app.command("inspect")
def tag_inspect(tag: str, output: str = OutputOpt) -> None:
    """Show a tag's limit and the task runs holding its slots."""
    got = _storage().read_tag_concurrency_limit(tag)
    if check_output(output) == "json":
        return emit_json(got)
    details(f"Concurrency limit {tag}", got)


@tag_app.command("reset")
def tag_reset(tag: str) -> None:
    """Free every slot of a tag's limit."""
    _storage().reset_tag_concurrency_limit(tag)
    typer.echo(f"Reset concurrency limit set on the tag: {tag}")


@tag_app.command("delete")
def tag_delete(tag: str) -> None:
    """Delete a tag's limit."""
    _storage().delete_tag_concurrency_limit(tag)
    typer.echo(f"Deleted concurrency limit set on the tag: {tag}")
