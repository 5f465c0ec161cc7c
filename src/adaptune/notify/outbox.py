"""Outgoing webhooks through an outbox: rows written first, delivered later, retried with backoff.

:func:`notify` writes one ``notifications`` row per URL in one transaction, so nothing is lost
when the process dies before sending. :func:`deliver_due`
POSTs the rows whose time has come, signs each body with HMAC-SHA256 when a secret is set, and
reschedules failures with exponential backoff and jitter until a maximum number of attempts.

Webhook URLs often carry a token (Slack's do), so logs and ``last_error`` show only the host.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import Row, select, update

from adaptune.errors import ConfigError
from adaptune.notify.text import FORMATS, render
from adaptune.store import Store, schema

log = logging.getLogger(__name__)

PENDING, SENT, FAILED = "pending", "sent", "failed"
MAX_ATTEMPTS = 8
BACKOFF_CAP_S = 600.0
JITTER = 0.2
SENDING_HOLD_S = 60.0
"""How long a row being sent is hidden from other deliverers (so it is sent once)."""


def backoff_s(attempts: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after the ``attempts``-th failure: 2^attempts, ±20 % jitter, ≤ 10 min."""
    base = min(2.0 ** max(attempts, 0), BACKOFF_CAP_S)
    factor = 1 + JITTER * (2 * (rng or random).random() - 1)
    return min(base * factor, BACKOFF_CAP_S)


def signature(secret: str, body: bytes) -> str:
    """The ``X-Adaptune-Signature-256`` value: ``sha256=<hex HMAC-SHA256 of body>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def safe_url(url: str) -> str:
    """``scheme://host/…``: enough to tell endpoints apart without leaking a token in the path."""
    parts = urlsplit(url)
    return (
        f"{parts.scheme}://{parts.hostname or '?'}{':' + str(parts.port) if parts.port else ''}/…"
    )


def notify(
    store: Store, event: str, data: dict[str, Any], urls: Sequence[str], fmt: str = "slack"
) -> int:
    """Queue ``event`` for every URL in ``urls``; the number of outbox rows written."""
    if fmt not in FORMATS:
        raise ConfigError(f"Unknown notification format '{fmt}'; use one of {', '.join(FORMATS)}.")
    targets = [u.strip() for u in urls if u.strip()]
    if not targets:
        return 0
    now = datetime.now(UTC)
    body = render(event, data, fmt, now)
    rows = [
        {"url": u, "event": event, "body": body, "state": PENDING, "attempts": 0}
        | {"next_attempt_at": now, "created_at": now}
        for u in targets
    ]
    with store.begin() as conn:
        conn.execute(schema.notifications.insert(), rows)
    log.info("queued %s for %d endpoint(s)", event, len(rows))
    return len(rows)


def _reserve(store: Store, now: datetime, limit: int) -> list[Row]:
    """Due rows, each pushed back by ``SENDING_HOLD_S`` so that no other deliverer takes it."""
    t = schema.notifications
    query = (
        select(t)
        .where(t.c.state == PENDING, t.c.next_attempt_at <= now)
        .order_by(t.c.next_attempt_at, t.c.id)
        .limit(limit)
    )
    hold = now + timedelta(seconds=SENDING_HOLD_S)
    taken = []
    with store.begin() as conn:
        for row in conn.execute(query).all():
            mine = conn.execute(
                update(t)
                .where(t.c.id == row.id, t.c.state == PENDING, t.c.attempts == row.attempts)
                .where(t.c.next_attempt_at == row.next_attempt_at)
                .values(next_attempt_at=hold)
            )
            if mine.rowcount == 1:
                taken.append(row)
    return taken


def _post(client: httpx.Client, row: Row, secret: str | None) -> str | None:
    """Send one row; ``None`` on a 2xx answer, else what went wrong (no URL, no secret)."""
    body = row.body.encode()
    headers = {
        "Content-Type": "application/json",
        "X-Adaptune-Event": row.event,
        "X-Adaptune-Delivery": str(row.id),
    }
    if secret:
        headers["X-Adaptune-Signature-256"] = signature(secret, body)
    try:
        response = client.post(row.url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {str(exc).replace(row.url, safe_url(row.url))}"
    if 200 <= response.status_code < 300:
        return None
    return f"HTTP {response.status_code}"


def _record(store: Store, row: Row, error: str | None, now: datetime, max_attempts: int) -> str:
    t = schema.notifications
    attempts = row.attempts + 1
    if error is None:
        values: dict[str, Any] = {"state": SENT, "sent_at": now, "last_error": None}
        outcome = SENT
    elif attempts >= max_attempts:
        values, outcome = {"state": FAILED, "last_error": error}, FAILED
        log.warning("notification %d to %s failed for good: %s", row.id, safe_url(row.url), error)
    else:
        wait = timedelta(seconds=backoff_s(attempts))
        values, outcome = {"next_attempt_at": now + wait, "last_error": error}, "retried"
        log.info("notification %d to %s: %s; retry in %s", row.id, safe_url(row.url), error, wait)
    with store.begin() as conn:
        conn.execute(update(t).where(t.c.id == row.id).values(attempts=attempts, **values))
    return outcome


def deliver_due(
    store: Store,
    secret: str | None,
    client: httpx.Client | None = None,
    now: datetime | None = None,
    max_attempts: int = MAX_ATTEMPTS,
    limit: int = 100,
) -> dict[str, int]:
    """POST every notification due at ``now``; counts ``{"sent", "retried", "failed"}``."""
    now = now or datetime.now(UTC)
    counts = {SENT: 0, "retried": 0, FAILED: 0}
    rows = _reserve(store, now, limit)
    if not rows:
        return counts
    own = client is None
    http = client or httpx.Client(timeout=10.0)
    try:
        for row in rows:
            counts[_record(store, row, _post(http, row, secret), now, max_attempts)] += 1
    finally:
        if own:
            http.close()
    return counts


def outbox(store: Store, states: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The outbox rows (oldest first) as dicts, for monitoring and tests."""
    t = schema.notifications
    query = select(t).order_by(t.c.id)
    if states is not None:
        query = query.where(t.c.state.in_(list(states)))
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]
