"""`create_app()`: the server's FastAPI app: the REST API under `/api`, the web UI at `/`, one basic-auth check in
front of both, a request-body size limit, CORS, and the error answers (404 unknown id, 422 bad body, 413 too
large, 401 no or wrong credentials)."""
from __future__ import annotations

import base64
import binascii
import hmac
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import settings
from ..errors import ConfigurationError, ObjectNotFound, RunStoreError
from .deps import ServedStore


class BasicAuth:
    """Refuses every HTTP request (API and UI) without the configured `user:password` with 401 and a
    `WWW-Authenticate: Basic` challenge, so a browser asks for it (Prefect's basic-auth model)."""

    def __init__(self, app: ASGIApp, auth_string: str):
        self.app = app
        self.expected = auth_string.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        response = JSONResponse({"detail": "authentication required: send the server's user:password with HTTP "
                                           "basic auth (DISTRIBUTARY_API_AUTH_STRING on clients)"},
                                status_code=401, headers={"WWW-Authenticate": 'Basic realm="distributary"'})
        await response(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() != b"basic":
                    return False
                try:
                    given = base64.b64decode(token.strip(), validate=True)
                except (binascii.Error, ValueError):
                    return False
                return hmac.compare_digest(given, self.expected)
        return False


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Answers 413 to a request whose body is larger than `max_bytes` (declared or streamed)."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit():
                if int(value) > self.max_bytes:
                    await self._refuse(scope, receive, send)
                else:  # the HTTP server delivers exactly the declared length: nothing to count
                    await self.app(scope, receive, send)
                return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse({"detail": f"request body larger than {self.max_bytes} bytes "
                                           "(DISTRIBUTARY_SERVER_API_MAX_BODY_BYTES): send it in smaller parts"},
                                status_code=413)
        await response(scope, receive, send)


class DistributaryApp(FastAPI):
    """The FastAPI app with the run store it serves (`store`, read by `deps.get_storage`)."""

    def __init__(self, store: ServedStore, **kwargs: Any):
        super().__init__(**kwargs)
        self.store = store


SERVICES_ENV = "DISTRIBUTARY__SERVER_SERVICES"


@asynccontextmanager
async def _with_services(app: Any) -> AsyncIterator[None]:
    from .services import start_services

    running = start_services(app.store.storage)
    try:
        yield
    finally:
        for service in running:
            service.stop()


def create_app(database_url: str | None = None, *, auth_string: str | None = None,
               cors_origins: list[str] | None = None, max_body_bytes: int | None = None,
               storage: Any = None, services: bool | None = None) -> FastAPI:
    """The app over the run store at `database_url` (default: the configured run store). `auth_string`,
    `cors_origins` and `max_body_bytes` default to the `DISTRIBUTARY_SERVER_*` settings. `services`: run the
    scheduler and late-runs services (`server/services/`) while the app is up (`distributary server start`; its
    worker processes find SERVICES_ENV set)."""
    if services is None:
        services = os.environ.get(SERVICES_ENV) == "1"
    from .. import __version__
    from .api import api_router
    try:
        from .ui import router as ui_router
    except ImportError as exc:  # jinja2 or markdown-it-py missing
        from ..errors import MissingDependencyError

        raise MissingDependencyError(f"the web UI ({exc.name})", "server", exc) from exc

    app = DistributaryApp(ServedStore(database_url, storage), lifespan=_with_services if services else None,
                          title="distributary", version=__version__,
                          docs_url="/docs", redoc_url=None, openapi_url="/api/openapi.json",
                          description="The distributary run store over HTTP, on Prefect 3's REST paths.")
    app.include_router(api_router(), prefix="/api")
    app.include_router(ui_router)

    @app.exception_handler(ObjectNotFound)
    async def not_found(_: Request, exc: ObjectNotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(ConfigurationError)
    async def refused(_: Request, exc: ConfigurationError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(RunStoreError)
    async def store_unavailable(_: Request, exc: RunStoreError) -> JSONResponse:
        return JSONResponse({"detail": f"the run store cannot be used: {exc}"}, status_code=503)

    if auth_string is None:
        auth_string = str(settings.get("SERVER_API_AUTH_STRING"))
    if max_body_bytes is None:
        max_body_bytes = int(settings.get("SERVER_API_MAX_BODY_BYTES"))
    if cors_origins is None:
        raw = str(settings.get("SERVER_CORS_ALLOWED_ORIGINS"))
        cors_origins = [o.strip() for o in raw.split(",") if o.strip()]
    # Starlette runs the middleware added last first: CORS answers preflights (which carry no credentials),
    # then auth, then the size limit, then the read cache (`read_cache.py`).
    entries = int(settings.get("SERVER_API_READ_CACHE_ENTRIES"))
    if entries > 0:
        from .read_cache import ReadCache

        app.add_middleware(ReadCache, store=app.store, max_entries=entries)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    if auth_string:
        app.add_middleware(BasicAuth, auth_string=auth_string)
    if cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=cors_origins, allow_methods=["*"], allow_headers=["*"],
                           allow_credentials="*" not in cors_origins)
    return app
