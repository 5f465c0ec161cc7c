"""A careful HTTP client for tracker APIs: retries, backoff and rate-limit waits.

- 5xx answers, timeouts, dropped connections and truncated bodies are retried with exponential
  backoff (``retries`` times) before a :class:`RemoteError` names the URL.
- 429, or 403 with ``Retry-After`` or ``X-RateLimit-Remaining: 0``, waits (``Retry-After``
  seconds, or until ``X-RateLimit-Reset``) and retries, saying so through ``progress``.
- After any answer that reports ``X-RateLimit-Remaining: 0`` the next request waits for the reset.
Credentials live in the headers of the underlying ``httpx.Client`` and are never logged.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from adaptune.errors import RemoteError

log = logging.getLogger(__name__)
RETRY_STATUS = {500, 502, 503, 504}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try before giving up."""

    retries: int = 5
    """Retries after the first attempt, for server errors and network failures."""
    backoff: float = 1.0
    """First backoff in seconds; doubles each retry."""
    max_backoff: float = 60.0
    """Longest single backoff."""
    max_rate_wait: float = 3600.0
    """Longest wait for a rate-limit reset before giving up with an error."""
    max_rate_waits: int = 10
    """Rate-limit answers in a row for one request before giving up with an error."""
    timeout: float = 30.0
    """Seconds per request (connect and read)."""


def _safe_url(url: httpx.URL) -> str:
    return str(url.copy_with(username=None, password=None))


class HttpClient:
    """``httpx.Client`` plus :class:`RetryPolicy`; use :meth:`get_json` / :meth:`request`."""

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
        policy: RetryPolicy | None = None,
        progress: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.policy = policy or RetryPolicy()
        self.progress = progress or (lambda _msg: None)
        self.sleep = sleep
        self._wait_until: float = 0.0
        self.client = httpx.Client(
            base_url=base_url,
            headers=headers or {},
            auth=auth,
            timeout=self.policy.timeout,
            follow_redirects=True,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _rate_wait(self, resp: httpx.Response) -> float | None:
        """Seconds to wait when ``resp`` is a rate-limit answer, else ``None``."""
        retry_after = resp.headers.get("retry-after")
        remaining = resp.headers.get("x-ratelimit-remaining")
        if resp.status_code not in (403, 429):
            return None
        if retry_after is not None:
            try:
                return max(0.0, float(retry_after))
            except ValueError:
                return self.policy.backoff
        if remaining == "0":
            reset = resp.headers.get("x-ratelimit-reset")
            try:
                return max(0.0, float(reset) - time.time()) + 1.0 if reset else 60.0
            except ValueError:
                return 60.0
        return 60.0 if resp.status_code == 429 else None

    def _note_remaining(self, resp: httpx.Response) -> None:
        if resp.headers.get("x-ratelimit-remaining") == "0":
            reset = resp.headers.get("x-ratelimit-reset")
            try:
                self._wait_until = float(reset) + 1.0 if reset else 0.0
            except ValueError:
                self._wait_until = 0.0

    def _pause(self, seconds: float, why: str) -> None:
        if seconds > self.policy.max_rate_wait:
            raise RemoteError(
                f"{why}: the wait of {seconds:.0f} s exceeds the limit of "
                f"{self.policy.max_rate_wait:.0f} s; try again later or use a token."
            )
        self.progress(f"{why}: waiting {seconds:.0f} s")
        self.sleep(seconds)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send a request with retries; answers below 500 (but rate limits) are returned."""
        pending = self._wait_until - time.time()
        if pending > 0:
            self._pause(pending, "rate limit exhausted")
        self._wait_until = 0.0
        delay = self.policy.backoff
        attempt = waits = 0
        while True:
            req = self.client.build_request(method, url, **kwargs)
            where = _safe_url(req.url)
            try:
                resp = self.client.send(req)
                resp.read()
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                problem = f"{type(exc).__name__} on {where}"
            else:
                wait = self._rate_wait(resp)
                if wait is not None:
                    waits += 1
                    if waits > self.policy.max_rate_waits:
                        raise RemoteError(
                            f"{where} kept answering {resp.status_code} (rate limited) after "
                            f"{waits - 1} waits; try again later."
                        )
                    self._pause(wait, f"rate limited ({resp.status_code}) on {where}")
                    continue
                if resp.status_code not in RETRY_STATUS:
                    self._note_remaining(resp)
                    return resp
                problem = f"HTTP {resp.status_code} on {where}"
            if attempt >= self.policy.retries:
                raise RemoteError(f"{problem}, still failing after {attempt + 1} attempts.")
            attempt += 1
            log.info("%s; retry %d in %.1f s", problem, attempt, delay)
            self.progress(f"{problem}; retry {attempt}/{self.policy.retries} in {delay:.1f} s")
            self.sleep(delay)
            delay = min(delay * 2, self.policy.max_backoff)

    def get_json(self, url: str, **kwargs: Any) -> tuple[httpx.Response, Any]:
        """GET ``url`` and parse its JSON, retrying a body that does not parse (truncation)."""
        return self.request_json("GET", url, **kwargs)

    def request_json(self, method: str, url: str, **kwargs: Any) -> tuple[httpx.Response, Any]:
        """Send a request and parse the JSON answer; a 304 comes back with ``None``."""
        for attempt in range(self.policy.retries + 1):
            resp = self.request(method, url, **kwargs)
            if resp.status_code == 304:
                return resp, None
            if resp.status_code >= 400:
                raise RemoteError(_refusal(resp))
            try:
                return resp, json.loads(resp.content)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                where = _safe_url(resp.request.url)
                if attempt >= self.policy.retries:
                    raise RemoteError(f"{where} did not answer valid JSON ({exc}).") from None
                self.progress(f"{where}: answer is not valid JSON; retrying")
                self.sleep(min(self.policy.backoff * 2**attempt, self.policy.max_backoff))
        raise AssertionError("unreachable")


def _refusal(resp: httpx.Response) -> str:
    where = _safe_url(resp.request.url)
    try:
        detail = resp.json()
        detail = detail.get("message") or detail.get("errorMessages") or detail
    except (ValueError, AttributeError):
        detail = resp.text[:200]
    hint = {
        401: "check the token (GITHUB_TOKEN / --token, JIRA_EMAIL + JIRA_API_TOKEN)",
        403: "the token lacks access to this resource",
        404: "check the repository or project name and the API URL",
        410: "this API endpoint is gone; upgrade adaptune or use another --api",
    }.get(resp.status_code, "see the server's message")
    return f"HTTP {resp.status_code} from {where}: {detail!s:.200} ({hint})."
