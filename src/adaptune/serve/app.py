"""The FastAPI app factory: routes, auth, limits, error shapes, metrics, start-up warm-up.

``create_app(store, settings, generator)`` builds one app; ``adaptune serve`` runs it under
uvicorn. Every error body is ``{"detail": ...}``: 413 for a body over the configured size, 422
naming the field for a malformed one, 404/409 for unknown or refused things.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Send

from adaptune import __version__
from adaptune.errors import AdaptuneError, ConfigError, DomainError, StoreError
from adaptune.feedback import FeedbackError
from adaptune.generate import GenerationError, Generator
from adaptune.generate.openai import OpenAIGenerator
from adaptune.registry import RegistryError
from adaptune.serve.auth import LoginRequired
from adaptune.serve.settings import ServeSettings, serve_settings
from adaptune.serve.state import ServiceState
from adaptune.serve.tickets import TicketNotFound
from adaptune.store import Store

if TYPE_CHECKING:
    from adaptune.memory.embed import Embedder

log = logging.getLogger(__name__)


class BodyLimit:
    """Pure ASGI middleware: a request body over ``limit`` bytes gets 413 before any handler."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _too_large(send, self.limit)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await _too_large(send, self.limit)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body, sent = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
DEFAULT_CSP = b"default-src 'none'; base-uri 'none'; frame-ancestors 'none'"
"""The policy of every response that does not bring its own (JSON, text, errors)."""


class SecurityHeaders:
    """Pure ASGI middleware: every response gets ``nosniff``, no framing, no referrer, and a
    Content-Security-Policy (the strict default unless the page set its own)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                names = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", DEFAULT_CSP))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps({"detail": f"The request body is over the limit of {limit} bytes."})
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body.encode()})


def _status_of(exc: AdaptuneError) -> int:
    if isinstance(exc, TicketNotFound | FeedbackError):
        return 404
    if isinstance(exc, RegistryError):
        return 404 if str(exc).startswith("No adapter version") else 409
    if isinstance(exc, DomainError | ConfigError):
        return 422
    if isinstance(exc, GenerationError | StoreError):
        return 503
    return 500


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(exc)}, status_code=422)

    @app.exception_handler(SQLAlchemyError)
    async def database(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        # A full disk or a lost database server: nothing half-written, say so plainly.
        reason = getattr(exc, "orig", None) or exc.__class__.__name__
        log.error("database error on %s: %s", request.url.path, reason)
        return JSONResponse(
            {"detail": f"The database refused the request ({reason}); nothing was stored."},
            status_code=503,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        detail: Any = exc.detail
        status = exc.status_code
        if status == 400 and detail == "There was an error parsing the body":
            # FastAPI's own answer to a body it cannot decode: the API documents 422 for that.
            status, detail = 422, "body: the body is not valid JSON in UTF-8."
        if status == 405:
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return JSONResponse({"detail": detail}, status_code=status, headers=headers)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> HTMLResponse:
        from adaptune.serve.dashboard import login_page

        message = None if request.headers.get("authorization") is None else str(exc.detail)
        response = login_page(message, status=401)
        response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(AdaptuneError)
    async def known(request: Request, exc: AdaptuneError) -> JSONResponse:
        status = _status_of(exc)
        if status == 500:
            log.error("request failed: %s", exc)
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.middleware("http")
    async def measure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")
        metrics = request.app.state.service.metrics
        metrics.requests.labels(name, request.method, str(response.status_code)).inc()
        metrics.latency.labels(name).observe(time.perf_counter() - started)
        return response


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> list[str]:
    """The methods the app answers at the request's path (for ``Allow``).

    Routes whose path is this very path win over templates that also match it: ``GET
    /v1/jobs/{job_id}`` is not a method of ``/v1/jobs/train``.
    """
    from starlette.routing import Match

    literal: set[str] = set()
    templated: set[str] = set()
    routes = list(_leaf_routes(request.app.router.routes))
    for method in METHODS:
        scope = {**request.scope, "method": method}
        for route in routes:
            match, child = route.matches(scope)
            if match == Match.FULL:
                (templated if child.get("path_params") else literal).add(method)
    found = literal or templated
    return [m for m in METHODS if m in found]


def _leaf_routes(routes: list[BaseRoute]) -> Iterator[BaseRoute]:
    """The app's routes, looking inside the routers it includes."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _leaf_routes(inner.routes)
        else:
            yield route


def create_app(
    store: Store,
    settings: ServeSettings | None = None,
    generator: Generator | None = None,
    embedder: Embedder | None = None,
) -> FastAPI:
    """The service for ``store``; ``generator=None`` follows ``settings.generator``."""
    import adaptune.serve.dashboard as dashboard
    from adaptune.serve.routes import admin, ops, tickets, webhooks

    settings = settings or serve_settings()
    if generator is None:
        generator = default_generator(settings, store)
    state = ServiceState(store, settings, generator, embedder)
    state.metrics.bind(store)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.warm:
            threading.Thread(target=_warm, args=(state,), name="warm-up", daemon=True).start()
        yield

    app = FastAPI(
        title="adaptune",
        version=__version__,
        description="Answers, triage and similar issues for tickets; signed tracker webhooks; "
        "feedback; adapters and training jobs.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = state
    _install_docs(app)
    for module in (ops, tickets, admin, webhooks, dashboard):
        app.include_router(module.router)
    _install_handlers(app)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(SecurityHeaders)
    return app


DOCS_ASSETS = (
    "script-src https://cdn.jsdelivr.net",
    "style-src https://cdn.jsdelivr.net https://fonts.googleapis.com 'unsafe-inline'",
    "font-src https://fonts.gstatic.com",
    "img-src https://fastapi.tiangolo.com https://cdn.redoc.ly data:",
    "connect-src 'self'",
    "worker-src blob:",
)
"""What the interactive API pages load: FastAPI's Swagger UI and ReDoc from their CDN. Their
inline scripts are FastAPI's own, hashed when the app is built; they show no stored data, so
their styles may be inline (the libraries inject them)."""


def _install_docs(app: FastAPI) -> None:
    """``/docs``, ``/docs/oauth2-redirect`` and ``/redoc`` with policies hashed from their HTML."""
    from fastapi.openapi.docs import (
        get_redoc_html,
        get_swagger_ui_html,
        get_swagger_ui_oauth2_redirect_html,
    )

    from adaptune.pages import policy_for

    pages = {
        "/docs": get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url="/docs/oauth2-redirect",
        ),
        "/docs/oauth2-redirect": get_swagger_ui_oauth2_redirect_html(),
        "/redoc": get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - ReDoc"),
    }
    for path, built in pages.items():
        body = bytes(built.body)
        csp = policy_for(body.decode("utf-8"), DOCS_ASSETS)

        async def show(body: bytes = body, csp: str = csp) -> HTMLResponse:
            return HTMLResponse(body, headers={"Content-Security-Policy": csp})

        app.add_api_route(path, show, methods=["GET"], include_in_schema=False)


def _warm(state: ServiceState) -> None:
    try:
        state.warm()
    except Exception:  # readiness stays false; the log says why
        log.exception("warm-up failed")


def default_generator(settings: ServeSettings, store: Store) -> Generator | None:
    """The generator ``settings.generator`` names (``None`` for ``none``).

    Each engine is imported when it is chosen: the local ones load torch and transformers.
    """
    if settings.generator == "none":
        return None
    if settings.generator == "openai":
        if not settings.openai_base_url:
            raise ConfigError("ADAPTUNE_GENERATOR=openai needs ADAPTUNE_OPENAI_BASE_URL.")
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        return OpenAIGenerator(settings.openai_base_url, settings.model or "base", key)
    home = store.settings.home
    if settings.generator == "llamacpp" or (
        settings.generator == "auto" and _llamacpp_fits(settings)
    ):
        from adaptune.generate.llamacpp import LlamaCppGenerator

        return LlamaCppGenerator(settings.gguf, home=home, model_path=settings.model)
    from adaptune.generate.local import LocalGenerator

    return LocalGenerator(model_path=settings.model, home=home)


def _llamacpp_fits(settings: ServeSettings) -> bool:
    """``auto``: llama.cpp serves when installed and the base model exists as a GGUF."""
    from adaptune.generate.llamacpp import available

    return available() and (settings.gguf is not None or settings.model is None)
