"""Where the run store is and which schema revision this code writes (no SQLAlchemy here: the sink reads them
before deciding whether it needs SQLAlchemy at all)."""
from __future__ import annotations

from .. import settings

HEAD = "0010_enforce_parameter_schema"  # the newest revision in migrations/versions (a test checks it)


def api_url() -> str:
    """DISTRIBUTARY_API_URL, or "" when the embedded run store is in use (read without importing the API client)."""
    return str(settings.get("API_URL"))


def database_url() -> str:
    """The run store's URL: the setting, or the SQLite file under DISTRIBUTARY_HOME."""
    url = settings.get("API_DATABASE_CONNECTION_URL")
    if url:
        return normalize_url(url)
    return f"sqlite:///{settings.get('HOME') / 'runs.db'}"


def normalize_url(url: str) -> str:
    """Map Prefect-style URLs to the drivers installed here (postgresql+asyncpg:// -> postgresql+psycopg://)."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def sqlite_path(url: str) -> str | None:
    """The file of a `sqlite:///path` URL (None for other URLs and in-memory databases)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):].split("?", 1)[0]
    return path if path and path != ":memory:" else None
