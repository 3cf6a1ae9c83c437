"""Run-store fixtures: an SQLite file per test and a real PostgreSQL 15 server per session (a fresh database
per test)."""
from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from pg_server import PostgresServer  # noqa: E402

_ids = itertools.count()


@pytest.fixture(scope="session")
def pg_server():
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'runs.db'}"


@pytest.fixture
def pg_url(pg_server):
    return pg_server.create_database(f"t{next(_ids)}")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request):
    """The URL of an empty run store, once per backend: the contract suite runs against both."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture
def storage(store_url):
    from distributary.runstore import storage as st

    s = st.SqlRunStorage(url=store_url)
    yield s
    s.engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_env(request, run_home, monkeypatch):
    """A fresh run store selected the way users select it: the embedded SQLite file under DISTRIBUTARY_HOME,
    or PostgreSQL through DISTRIBUTARY_API_DATABASE_CONNECTION_URL."""
    if request.param == "postgresql":
        monkeypatch.setenv("DISTRIBUTARY_API_DATABASE_CONNECTION_URL", request.getfixturevalue("pg_url"))
    return request.param
