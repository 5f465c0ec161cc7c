"""Dashboard log-in sessions: a token typed into the log-in form, held by an HTTP-only cookie.

A browser cannot send ``Authorization: Bearer`` for a page, and a token in a URL ends up in
access logs, browser history and ``Referer`` headers. So ``POST /login`` takes the token from a
form body, checks it like a bearer token, and answers with a cookie that carries a random
session id. The server keeps only the SHA-256 of that id, with the *digest* of the token it
stands for (never the token) and an expiry. Each request through a session looks the token up
again, so revoking the token ends its sessions at once.

Sessions only ever grant the ``read`` scope, and only to ``GET``/``HEAD`` requests: a cookie is
sent by the browser on its own, so it must not be able to write (no cross-site request forgery
of tickets, feedback or promotions). The cookie is ``HttpOnly``, ``SameSite=Strict``, ``Path=/``
and ``Secure`` when the request came over HTTPS. Sessions live in the process's memory: a
restart asks everyone to log in again.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass

COOKIE = "adaptune_session"
"""The session cookie's name."""
TTL_S = 12 * 3600
"""How long a session lasts after log-in."""
MAX_SESSIONS = 10_000
"""Sessions kept at most; the oldest go first."""
ENV_TOKEN = "env"
"""What a session of ``ADAPTUNE_API_TOKEN`` holds instead of a stored token's digest."""


@dataclass(frozen=True, slots=True)
class Session:
    """Who logged in: a stored token's digest (or :data:`ENV_TOKEN`), until ``expires``."""

    token_sha256: str
    expires: float


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()


class Sessions:
    """The log-in sessions of one service; thread-safe."""

    def __init__(self, ttl_s: float = TTL_S) -> None:
        self.ttl_s = ttl_s
        self._by_key: dict[str, Session] = {}
        self._lock = threading.Lock()

    def open(self, token_sha256: str, now: float | None = None) -> str:
        """A new session for the token with this digest; returns the id for the cookie."""
        now = time.monotonic() if now is None else now
        session_id = secrets.token_urlsafe(32)
        with self._lock:
            if len(self._by_key) >= MAX_SESSIONS:
                self._drop_expired(now)
                while len(self._by_key) >= MAX_SESSIONS:
                    del self._by_key[next(iter(self._by_key))]
            self._by_key[_key(session_id)] = Session(token_sha256, now + self.ttl_s)
        return session_id

    def get(self, session_id: str | None, now: float | None = None) -> Session | None:
        """The live session of ``session_id``, or ``None`` (unknown, expired or malformed)."""
        if not session_id or len(session_id) > 100:
            return None
        now = time.monotonic() if now is None else now
        with self._lock:
            found = self._by_key.get(_key(session_id))
            if found is not None and found.expires <= now:
                del self._by_key[_key(session_id)]
                return None
            return found

    def close(self, session_id: str | None) -> None:
        """End ``session_id`` (log-out); unknown ids are ignored."""
        if session_id:
            with self._lock:
                self._by_key.pop(_key(session_id), None)

    def _drop_expired(self, now: float) -> None:
        for key in [k for k, s in self._by_key.items() if s.expires <= now]:
            del self._by_key[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_key)
