"""`distributary variable ls / get / set / unset`."""
from __future__ import annotations

import json

import typer

from ._output import CliFailure, OutputOpt, check_output, client, emit_json, table

app = typer.Typer(help="Variables: named JSON values.", no_args_is_help=True)


@app.command("ls")
def ls(limit: int = typer.Option(100, help="how many"), output: str = OutputOpt) -> None:
    """List variables by name."""
    vs = client().read_variables(limit=limit)
    if check_output(output) == "json":
        return emit_json(vs)
    table("Variables", ["Name", "Value", "Tags", "Updated"], [(v.name, json.dumps(v.value), v.tags, v.updated)
                                                              for v in vs])


@app.command("get")
def get(name: str) -> None:
    """Print the JSON value of variable NAME."""
    v = client().read_variable_by_name(name)
    if v is None:
        raise CliFailure(f"no variable named {name!r}")
    typer.echo(json.dumps(v.value))


@app.command("set")
def set_(name: str, value: str, overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing one"),
         tag: list[str] | None = typer.Option(None, "--tag")) -> None:
    """Set variable NAME to VALUE (JSON; a bare word is taken as a string)."""
    from ..variables import Variable

    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    try:
        Variable.set(name, parsed, tags=tag, overwrite=overwrite)
    except ValueError as exc:
        raise CliFailure(str(exc)) from None
    typer.echo(f"Set variable {name!r}")


@app.command("unset")
def unset(name: str) -> None:
    """Delete variable NAME."""
    from ..variables import Variable

    if not Variable.unset(name):
        raise CliFailure(f"no variable named {name!r}")
    typer.echo(f"Unset variable {name!r}")
