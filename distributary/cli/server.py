"""`distributary server start` (the API and the UI on uvicorn) and `distributary server database upgrade/reset`."""
from __future__ import annotations

import os
import signal
from typing import Any

import typer

app = typer.Typer(help="The distributary server: the run store over HTTP and the web UI.", no_args_is_help=True)
database_app = typer.Typer(help="The server's run-store database.", no_args_is_help=True)
app.add_typer(database_app, name="database")


def _need_server_extra() -> None:
    from ..errors import MissingDependencyError

    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(f"the server ({exc.name})", "server", exc) from exc


@app.command("start")
def start(host: str = typer.Option(None, help="address to listen on (DISTRIBUTARY_SERVER_API_HOST, 127.0.0.1)"),
          port: int = typer.Option(None, help="port to listen on (DISTRIBUTARY_SERVER_API_PORT, 4200)"),
          workers: int = typer.Option(None, help="server processes (DISTRIBUTARY_SERVER_WORKERS; default: one per "
                                                 "CPU core, at most 4)"),
          log_level: str = typer.Option("info", help="uvicorn's log level")) -> None:
    """Serve the API under /api and the UI at / until SIGTERM or Ctrl-C (a graceful stop), with the scheduler
    and late-runs services (DISTRIBUTARY_SERVER_SERVICES_*)."""
    from .. import settings

    _need_server_extra()
    import uvicorn

    from ..runstore import db
    from ..server.app import SERVICES_ENV, create_app

    host = host or str(settings.get("SERVER_API_HOST"))
    port = port if port is not None else int(settings.get("SERVER_API_PORT"))
    workers = workers if workers is not None else int(settings.get("SERVER_WORKERS"))
    if workers <= 0:
        workers = max(1, min(4, os.cpu_count() or 1))
    url = db.database_url()
    # migrate once, here, before any worker opens the store; then let the workers open their own connections
    db.get_engine(url)
    db.dispose_engines()
    app_ = create_app(url, services=True)
    typer.echo(f"distributary server on http://{host}:{port} (API http://{host}:{port}/api, docs /docs), "
               f"run store {db.redact(url)}, {workers} worker process{'es' if workers > 1 else ''}")
    if settings.get("SERVER_API_AUTH_STRING"):
        typer.echo("basic auth is on (DISTRIBUTARY_SERVER_API_AUTH_STRING)")
    elif host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(f"warning: listening on {host} without auth: anyone who can reach it can read and change the "
                   "run store; set DISTRIBUTARY_SERVER_API_AUTH_STRING=user:password", err=True)
    # uvicorn stops gracefully on SIGTERM and SIGINT (stops accepting, finishes the requests in flight), then
    # raises the signal again with the handlers it found: these make that a normal exit (code 0).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    common: dict[str, Any] = {"host": host, "port": port, "log_level": log_level, "access_log": log_level in ("debug", "trace"),
                              "timeout_graceful_shutdown": 10}
    if workers == 1:
        uvicorn.run(app_, **common)
    else:
        # each worker process builds its app from the same settings (the environment it inherits); they share the
        # listening socket, and the store: SQLite in WAL mode (readers never wait, writers take turns) or a
        # PostgreSQL connection pool each
        os.environ["DISTRIBUTARY_API_DATABASE_CONNECTION_URL"] = url
        os.environ[SERVICES_ENV] = "1"  # each worker process runs the services (their writes are exactly once)
        uvicorn.run("distributary.server.app:create_app", factory=True, workers=workers, **common)
    typer.echo("distributary server stopped")


@database_app.command("upgrade")
def upgrade() -> None:
    """Create the run-store database or bring its schema to the newest revision."""
    from ..runstore import db

    url = db.database_url()
    eng = db.get_engine(url, migrate=False)
    db.upgrade(eng)
    typer.echo(f"run store {db.redact(url)} at schema revision {db.schema_revision(eng)}")


@database_app.command("reset")
def reset(yes: bool = typer.Option(False, "--yes", "-y", help="do not ask for confirmation")) -> None:
    """Delete every table of the run-store database (all runs, logs, artifacts, variables) and recreate it."""
    import sqlalchemy as sa

    from ..runstore import db

    url = db.database_url()
    if not yes and not typer.confirm(f"Delete everything in the run store {db.redact(url)}?"):
        raise typer.Abort()
    eng = db.get_engine(url, migrate=False)
    meta = sa.MetaData()
    meta.reflect(eng)
    meta.drop_all(eng)
    db.upgrade(eng)
    typer.echo(f"run store {db.redact(url)} reset (schema revision {db.schema_revision(eng)})")
