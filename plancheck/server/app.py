"""The HTTP server: the FastAPI app (JSON API, pages, /healthz, /metrics, /docs) and `serve()`.

Errors are one JSON shape, `{"error": CODE, "message": TEXT}` (HTML on the pages), and never echo
the request body back. Every response carries security headers: a CSP without inline script,
no framing, no referrer, no caching of results.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plancheck.api import Plancheck
from plancheck.api.access import Scope as TokenScope
from plancheck.core.errors import Conflict, Forbidden, InvalidInput, NotFound, PlancheckError, Unauthorized
from plancheck.server import api_v1, pages
from plancheck.server.auth import GrantDep, LoginRequired, Sessions, log_refusal, secret_source
from plancheck.server.watch import FinishWatcher

log = logging.getLogger(__name__)

TOO_LARGE = "the request body is too large"
HEALTH_TIMEOUT = 1.0
SHUTDOWN_SECONDS = 3
LONG_POLL_INTERVAL = 0.5

_ERROR_STATUS: tuple[tuple[type[PlancheckError], int], ...] = (
    (Unauthorized, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (InvalidInput, 422),
)
ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    500: "internal",
    503: "unavailable",
}
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def max_body_bytes(max_sql_bytes: int) -> int:
    """Room for the largest plan's SQL with JSON escaping; a larger body is refused unread."""
    return 2 * max_sql_bytes


def create_app(api: Plancheck | None = None) -> FastAPI:
    """The app over `api` (default: settings from the environment)."""
    api = api or Plancheck()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await app.state.watcher.stop()

    app = FastAPI(
        title="plancheck",
        summary="Plan checks (SQL review and change reports) for PostgreSQL change plans.",
        version="1",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.api = api
    app.state.sessions = Sessions(secret_source(api), api.settings.session_seconds)
    app.state.watcher = FinishWatcher(api.progress, LONG_POLL_INTERVAL)
    app.state.server_metrics = _server_metrics(app.state.watcher)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes(api.settings.max_sql_bytes))
    app.add_middleware(SecurityHeaders, docs_csp=_docs_csp())  # outermost: every answer gets the headers
    _add_error_handlers(app)
    app.include_router(api_v1.router)
    app.include_router(_operations_router())
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(packages=[("plancheck.server", "static")]), name="static")
    return app


# -- /healthz, /metrics, /docs --------------------------------------------------------------------
def _operations_router() -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    def healthz(request: Request) -> JSONResponse:
        """No token needed: whether the metadata database (at the schema head) and the broker answer."""
        health = request.app.state.api.health(HEALTH_TIMEOUT)
        healthy = all(health.values())
        return JSONResponse({"status": "ok" if healthy else "unavailable", **health}, 200 if healthy else 503)

    @router.get("/metrics", response_class=Response)
    def metrics(request: Request, grant: GrantDep) -> Response:
        """Prometheus metrics, computed from PostgreSQL; they span every project, so they need a read
        token that is not limited to one project."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        grant.require(TokenScope.READ, None)
        own = generate_latest(request.app.state.server_metrics)
        return Response(request.app.state.api.metrics() + own, media_type=CONTENT_TYPE_LATEST)

    @router.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return _docs_page()

    return router


def _server_metrics(watcher: FinishWatcher) -> Any:
    """Metrics of this server process itself (the rest come from PostgreSQL)."""
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry(auto_describe=False)
    Gauge(
        "plancheck_api_long_polls",
        "Requests of this API server process waiting for a run to finish.",
        registry=registry,
    ).set_function(lambda: watcher.waiting)
    return registry


def _docs_page() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json", title="plancheck API", swagger_favicon_url="/static/favicon.svg"
    )


def _docs_csp() -> str:
    """Swagger UI's assets come from its CDN; its one inline script is allowed by hash, nothing else."""
    body = bytes(_docs_page().body).decode()
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in re.findall(r"<script>(.*?)</script>", body, re.S)
    )
    cdn = "https://cdn.jsdelivr.net"
    return (
        f"default-src 'none'; script-src {cdn} {hashes}; style-src {cdn} 'unsafe-inline'; "
        f"img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
    )


# -- security headers -----------------------------------------------------------------------------
class SecurityHeaders:
    """Adds the CSP, anti-framing, no-referrer and no-store headers to every HTTP response."""

    def __init__(self, app: ASGIApp, docs_csp: str) -> None:
        self.app = app
        self.docs_csp = docs_csp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        headers = {
            b"content-security-policy": (self.docs_csp if path == "/docs" else PAGE_CSP).encode(),
            b"x-frame-options": b"DENY",
            b"x-content-type-options": b"nosniff",
            b"referrer-policy": b"no-referrer",
            b"cross-origin-opener-policy": b"same-origin",
        }
        if not path.startswith("/static/"):
            headers[b"cache-control"] = b"no-store"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *((name, value) for name, value in headers.items() if name not in present),
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyTooLarge(HTTPException):
    def __init__(self) -> None:
        super().__init__(413, TOO_LARGE)


class BodyLimit:
    """Refuses a request body over `max_bytes`: at once when its Content-Length says so, else as soon
    as the bytes received pass the limit. Both answers are the JSON 413 (FastAPI's own `max_body_size`
    answers in plain text, and replaces any response to an over-long declared body with it).
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response = JSONResponse({"error": ERROR_CODES[413], "message": TOO_LARGE}, 413, {"Connection": "close"})
            await response(scope, receive, send)
            return
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge  # FastAPI passes an HTTPException on to the error handlers
            return message

        await self.app(scope, receive_within_limit, send)


# -- errors ---------------------------------------------------------------------------------------
def _wants_json(request: Request) -> bool:
    path = request.url.path
    return path.startswith("/api/") or path in ("/metrics", "/healthz") or path.endswith("/progress")


def error_response(
    request: Request, status: int, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    if _wants_json(request):
        body = {"error": ERROR_CODES.get(status, "error"), "message": message, **extra}
        return JSONResponse(body, status_code=status, headers=headers)
    return pages.render(request, "error.html", status, status_code_text=status, message=message, grant=None)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PlancheckError)
    async def plancheck_error(request: Request, exc: PlancheckError) -> Response:
        status = next((code for kind, code in _ERROR_STATUS if isinstance(exc, kind)), 400)
        if status in (401, 403):
            log_refusal(request, status, exc)
        if isinstance(exc, LoginRequired) and not _wants_json(request):
            return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return error_response(request, status, str(exc), headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        if any(error.get("type") == "json_invalid" for error in errors):
            return error_response(request, 400, "the request body is not valid JSON")
        # The input is never echoed: it may be 16 MiB of SQL, or a secret sent by mistake.
        details = [
            {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type", "")}
            for error in errors
        ]
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(part) for part in first["loc"] if part != "body")
        return error_response(request, 422, f"{where}: {first['msg']}" if where else str(first["msg"]), details=details)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        message = TOO_LARGE if exc.status_code == 413 else str(exc.detail)
        return error_response(request, exc.status_code, message, dict(exc.headers or {}))

    @app.exception_handler(DBAPIError)
    async def database_error(request: Request, exc: DBAPIError) -> Response:
        log.warning("metadata database error on %s %s: %s", request.method, request.url.path, type(exc.orig).__name__)
        return error_response(request, 503, "the metadata database is unavailable; try again")


# -- running it -----------------------------------------------------------------------------------
def serve(host: str, port: int) -> None:
    """Serve the app with uvicorn until SIGINT or SIGTERM."""
    import uvicorn

    from plancheck.core.logs import configure
    from plancheck.core.settings import load_settings

    settings = load_settings()
    configure(settings.log_format)
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)  # /healthz reads the revision
    app = create_app(Plancheck(settings))
    # Long-polls would hold a graceful shutdown for up to a minute: give them a few seconds.
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        proxy_headers=True,
        server_header=False,
        timeout_graceful_shutdown=SHUTDOWN_SECONDS,
    )
