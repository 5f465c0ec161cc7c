"""Bearer-token checks and per-client rate limiting, as FastAPI dependencies.

A missing or unknown token is 401, a known token without the scope is 403. The environment's
``ADAPTUNE_API_TOKEN`` is compared in constant time; stored tokens are found by their hash.
"""

from __future__ import annotations

import hmac
import math
import threading
import time
from collections import deque
from collections.abc import Callable

from fastapi import HTTPException, Request

from adaptune.serve.tokens import TokenInfo, has_tokens, lookup

ANONYMOUS = TokenInfo("anonymous", frozenset())


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def identify(request: Request) -> TokenInfo | None:
    """The token holder of ``request``, or ``None`` when its token is missing or wrong."""
    state = request.app.state.service
    token = _bearer(request)
    if token is None:
        return None
    env = state.settings.api_token
    if env is not None and hmac.compare_digest(
        token.encode("utf-8", "surrogatepass"), env.get_secret_value().encode()
    ):
        return TokenInfo("ADAPTUNE_API_TOKEN", frozenset({"read", "write", "admin"}))
    return lookup(state.store, token)


def require(scope: str) -> Callable[[Request], TokenInfo]:
    """A dependency that lets a request through only with a token holding ``scope``."""

    def check(request: Request) -> TokenInfo:
        state = request.app.state.service
        if scope == "read" and state.settings.open_reads:
            return identify(request) or ANONYMOUS
        who = identify(request)
        if who is None:
            configured = state.settings.api_token is not None or has_tokens(state.store)
            hint = (
                "send Authorization: Bearer <token>"
                if configured
                else "no token is configured: set ADAPTUNE_API_TOKEN or run "
                "`adaptune tokens create NAME --scope write`"
            )
            raise HTTPException(
                401, f"A valid bearer token is required; {hint}.", {"WWW-Authenticate": "Bearer"}
            )
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
    """A dependency: 429 with Retry-After when the client is over the tickets rate limit."""
    state = request.app.state.service
    client = getattr(request.state, "client_id", None) or (
        f"ip:{request.client.host}" if request.client else "ip:?"
    )
    wait = state.rate_limiter.check(client)
    if wait > 0:
        raise HTTPException(
            429,
            "Too many tickets from this client; retry later.",
            {"Retry-After": str(math.ceil(wait))},
        )
