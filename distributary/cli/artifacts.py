"""`distributary artifact ls / inspect KEY / delete KEY`."""
from __future__ import annotations

import typer

from ._output import CliFailure, OutputOpt, check_output, client, emit_json, table

app = typer.Typer(help="Artifacts: reports, tables, links, progress.", no_args_is_help=True)


@app.command("ls")
def ls(limit: int = typer.Option(15, help="how many"), all_versions: bool = typer.Option(
        False, "--all", help="every version of keyed artifacts, and unkeyed ones"), output: str = OutputOpt) -> None:
    """List artifacts: the latest version of each key (Prefect's `artifact ls`)."""
    cl = client()
    arts = cl.read_artifacts(limit=limit) if all_versions else cl.read_latest_artifacts(limit=limit)
    if check_output(output) == "json":
        return emit_json(arts)
    table("Artifacts", ["ID", "Key", "Type", "Updated", "Description"],
          [(a.id, a.key, a.type, a.updated, a.description) for a in arts])


@app.command("inspect")
def inspect(key: str, limit: int = typer.Option(10, help="how many versions"), output: str = OutputOpt) -> None:
    """Show the versions of the artifact KEY, newest first."""
    from ..schemas import filters as F

    arts = client().read_artifacts(artifact_filter=F.ArtifactFilter(key=F.ArtifactFilterKey(any_=[key])),
                                   limit=limit)
    if not arts:
        raise CliFailure(f"no artifact with key {key!r}")
    check_output(output)
    emit_json(arts)  # the data itself is what people inspect: JSON in both forms


@app.command("delete")
def delete(key: str) -> None:
    """Delete every version of the artifact KEY."""
    n = client().storage.delete_artifacts(key)
    if not n:
        raise CliFailure(f"no artifact with key {key!r}")
    typer.echo(f"Deleted {n} version(s) of artifact {key!r}")
