"""`distributary version` and `distributary bench` (the benchmark suite keeps its own argparse options)."""
from __future__ import annotations

import argparse
import platform
import sys

import typer


def register(app: typer.Typer) -> None:
    @app.command("version")
    def version() -> None:
        """Show the versions of distributary, Python and the platform."""
        from .. import __version__

        typer.echo(f"distributary {__version__}")
        typer.echo(f"python       {platform.python_version()} ({sys.executable})")
        typer.echo(f"platform     {platform.platform()}")

    @app.command("bench", context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                                            "help_option_names": []})
    def bench(ctx: typer.Context) -> None:
        """Scaling benchmarks across task runners (`distributary bench --help` for its options)."""
        from ..bench.cli import add_arguments, run_bench

        parser = argparse.ArgumentParser(prog="distributary bench")
        add_arguments(parser)
        args = parser.parse_args(ctx.args)
        raise typer.Exit(int(run_bench(args) or 0))
