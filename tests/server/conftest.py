"""Fixtures of the real server (see api_server.py): `server` (a running server with an empty SQLite store of
its own) and `start_server(env=...)` (more servers, e.g. with auth or on PostgreSQL). The UI tests use them: keep
the names and attributes stable."""
from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "runstore"))
from api_server import ServerProcess  # noqa: E402
from pg_server import PostgresServer  # noqa: E402

_databases = itertools.count()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start servers with extra environment (`start_server(env={...})`); all are stopped at the end."""
    started: list[ServerProcess] = []

    def start(env: dict[str, str] | None = None, name: str = "server") -> ServerProcess:
        srv = ServerProcess(tmp_path / f"{name}{len(started)}", env=env)
        started.append(srv)
        return srv.start()

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture
def server(start_server: Callable[..., ServerProcess]) -> ServerProcess:
    """A running server with an empty SQLite run store of its own."""
    return start_server()


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for a whole test module (tests that only read, or do not mind each other's records)."""
    srv = ServerProcess(tmp_path_factory.mktemp("module-server")).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def api_pg_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL 15 for the session (tests/runstore/pg_server.py)."""
    pg = PostgresServer().start()
    yield pg
    pg.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_server(request: pytest.FixtureRequest, start_server: Callable[..., ServerProcess]) -> ServerProcess:
    """A running server with an empty run store, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return start_server()
    url = request.getfixturevalue("api_pg_server").create_database(f"api{next(_databases)}")
    return start_server(env={"DISTRIBUTARY_API_DATABASE_CONNECTION_URL": url})


@pytest.fixture
def api(server: ServerProcess) -> Iterator[Any]:
    """The HTTP run store (`ApiRunStorage`) of the `server` fixture."""
    from distributary.runstore.api_storage import ApiRunStorage

    st = ApiRunStorage(server.api_url)
    yield st
    st.close()
