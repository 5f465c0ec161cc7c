"""Bearer-token checks and per-client rate limiting, as FastAPI dependencies.

A missing, unknown, revoked or malformed token is 401, a known token without the scope is 403.
With ``ADAPTUNE_OPEN_READS`` a read without any token is let through anonymously, but a token
that is sent and wrong is still 401. The environment's ``ADAPTUNE_API_TOKEN`` is compared in
constant time; stored tokens are found by their hash. Pages also accept the log-in cookie of
:mod:`adaptune.serve.sessions` for reading.
"""

from __future__ import annotations

import hmac
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from fastapi import HTTPException, Request

from adaptune.serve.sessions import COOKIE, ENV_TOKEN, Sessions
from adaptune.serve.settings import ServeSettings
from adaptune.serve.tokens import TokenInfo, has_tokens, lookup, lookup_digest
from adaptune.store import Store

ANONYMOUS = TokenInfo("anonymous", frozenset())
ENV_HOLDER = TokenInfo("ADAPTUNE_API_TOKEN", frozenset({"read", "write", "admin"}))
"""Who holds ``ADAPTUNE_API_TOKEN``: every scope."""


class ServiceStateLike(Protocol):
    """What the checks read of the service's state."""

    store: Store
    settings: ServeSettings
    sessions: Sessions


class LoginRequired(HTTPException):
    """A page (not the JSON API) needs a log-in: answered with the log-in form, status 401."""


def _authorization(request: Request) -> tuple[str, str | None]:
    """``("none", None)``, ``("malformed", None)`` or ``("bearer", token)``."""
    header = request.headers.get("authorization")
    if header is None:
        return "none", None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return "malformed", None
    return "bearer", value.strip()


def token_holder(state: ServiceStateLike, token: str) -> TokenInfo | None:
    """Who holds ``token`` (the environment's token or a stored one), or ``None``."""
    env = state.settings.api_token
    if env is not None and hmac.compare_digest(
        token.encode("utf-8", "surrogatepass"), env.get_secret_value().encode()
    ):
        return ENV_HOLDER
    return lookup(state.store, token)


def identify(request: Request) -> TokenInfo | None:
    """The holder of ``request``'s bearer token, or ``None`` when it has none or a wrong one."""
    kind, token = _authorization(request)
    if kind != "bearer" or token is None:
        return None
    return token_holder(request.app.state.service, token)


def session_holder(request: Request) -> TokenInfo | None:
    """The holder behind the request's log-in cookie: only for ``GET``/``HEAD``, only ``read``.

    The token is looked up again on each request, so a revoked token's sessions end at once.
    """
    if request.method not in ("GET", "HEAD"):
        return None
    state = request.app.state.service
    session = state.sessions.get(request.cookies.get(COOKIE))
    if session is None:
        return None
    if session.token_sha256 == ENV_TOKEN:
        holder = ENV_HOLDER if state.settings.api_token is not None else None
    else:
        holder = lookup_digest(state.store, session.token_sha256)
    if holder is None or "read" not in holder.scopes:
        return None
    return TokenInfo(holder.name, frozenset({"read"}))


def _hint(state: ServiceStateLike) -> str:
    if state.settings.api_token is not None or has_tokens(state.store):
        return "send Authorization: Bearer <token>"
    return (
        "no token is configured: set ADAPTUNE_API_TOKEN or run "
        "`adaptune tokens create NAME --scope write`"
    )


def _unauthorized(state: ServiceStateLike, detail: str, page: bool) -> HTTPException:
    cls = LoginRequired if page else HTTPException
    return cls(401, detail, {"WWW-Authenticate": "Bearer"})


def require(scope: str, page: bool = False) -> Callable[[Request], TokenInfo]:
    """A dependency that lets a request through only with a token holding ``scope``.

    A bearer token that is present but unknown, revoked or malformed is always 401, even where
    reads are open. Pages (``page=True``) also accept the log-in cookie for reading and answer
    a missing log-in with the log-in form.
    """

    def check(request: Request) -> TokenInfo:
        state = request.app.state.service
        kind, token = _authorization(request)
        if kind == "malformed":
            raise _unauthorized(state, "The Authorization header must be 'Bearer <token>'.", page)
        who = token_holder(state, token) if token is not None else None
        if kind == "bearer" and who is None:
            raise _unauthorized(
                state, f"The bearer token is unknown or revoked; {_hint(state)}.", page
            )
        if who is None and page and scope == "read":
            who = session_holder(request)
        if who is None:
            if scope == "read" and state.settings.open_reads:
                return ANONYMOUS
            raise _unauthorized(state, f"A valid bearer token is required; {_hint(state)}.", page)
        if scope not in who.scopes:
            raise HTTPException(403, f"The token {who.name!r} lacks the {scope!r} scope.")
        request.state.client_id = f"token:{who.name}"
        return who

    return check


class RateLimiter:
    """A sliding one-minute window of requests per client; thread-safe."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, client: str, now: float | None = None) -> float:
        """0 when ``client`` may go on, else the seconds until it may (for Retry-After)."""
        if self.per_minute <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        with self._lock:
            q = self._seen.setdefault(client, deque())
            while q and q[0] <= now - 60:
                q.popleft()
            if len(q) >= self.per_minute:
                return max(q[0] + 60 - now, 0.001)
            q.append(now)
            if len(self._seen) > 10_000:  # forget idle clients so memory stays bounded
                for key in [k for k, v in self._seen.items() if not v][:5_000]:
                    del self._seen[key]
            return 0.0


def rate_limited(request: Request) -> None:
    """A dependency: 429 with Retry-After when the client is over its rate limit (tickets and
    feedback share one budget per client)."""
    state = request.app.state.service
    client = getattr(request.state, "client_id", None) or (
        f"ip:{request.client.host}" if request.client else "ip:?"
    )
    wait = state.rate_limiter.check(client)
    if wait > 0:
        raise HTTPException(
            429,
            "Too many requests from this client; retry later.",
            {"Retry-After": str(math.ceil(wait))},
        )
