"""The `distributary` console script (Typer + Rich): one module per command group.

    distributary flow-run ls --state FAILED --limit 5 --output json

Exit codes: 0 success, 1 a not-found or failed operation (one line on stderr), 2 a usage error.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import typer

app = typer.Typer(name="distributary", help="distributary workflow engine: runs, artifacts, variables, settings.",
                  no_args_is_help=True, add_completion=True, pretty_exceptions_enable=False)


def _register() -> None:
    from . import (artifacts, concurrency, config, deployments, runs, server, system, variables, work_pools,
                   work_queues)

    system.register(app)
    runs.register(app)
    app.add_typer(artifacts.app, name="artifact")
    app.add_typer(variables.app, name="variable")
    app.add_typer(deployments.app, name="deployment")
    app.command("deploy")(deployments.deploy_command)
    work_pools.register(app)
    work_queues.register(app)
    concurrency.register(app)
    app.add_typer(config.config_app, name="config")
    app.add_typer(config.profile_app, name="profile")
    app.add_typer(server.app, name="server")


_register()


def build_parser() -> Any:
    """The CLI as a click command (for documentation tools and tests)."""
    return typer.main.get_command(app)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    try:  # recent Typer vendors click
        from typer._click.exceptions import ClickException
    except ImportError:  # pragma: no cover - older Typer on click
        from click.exceptions import ClickException  # type: ignore[assignment]
    from typer import Abort

    from ..errors import DistributaryError
    from ._output import CliFailure

    try:
        rv = app(args=list(argv) if argv is not None else None, prog_name="distributary", standalone_mode=False)
    except ClickException as exc:  # usage errors: exit code 2
        exc.show()
        return exc.exit_code
    except Abort:
        return 1
    except (DistributaryError, CliFailure) as exc:
        typer.echo(f"Error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", err=True)
        return 1
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":
    sys.exit(main())
