"""Signed webhooks from GitHub and Jira into the store: the parts both trackers share.

The service's routes hand the raw body and the request headers to
:func:`~adaptune.ingest.webhooks_github.handle_github` or
:func:`~adaptune.ingest.webhooks_jira.handle_jira` (one module per tracker, each importing this
one) and answer with the :class:`WebhookResult` they return. This module holds what both
share: HMAC-SHA256 checks over the raw bytes (before any parsing), reading the body as a JSON
object, and :func:`deliver`, which records the delivery in ``webhook_deliveries`` *in the same
transaction* as the issue and comment upserts, so a crash never leaves one without the other
and a re-delivery is a no-op.

Answers: 401/503 for the signature, 400 for a missing or oversized header, 422 for a body that
is not a usable payload (not UTF-8, not a JSON object, ``NaN``, a number no column holds, an
invalid repository name) and for a repository no domain holds unless new domains are allowed
(``ADAPTUNE_WEBHOOK_NEW_DOMAINS``); whatever is refused stores nothing, not even the delivery.

Concurrency: the delivery row is inserted first, so two copies of one delivery serialise on its
unique key and the loser answers ``duplicate``. The rows a delivery touches are locked
(``FOR UPDATE`` on PostgreSQL; SQLite has one writer at a time) before the newest-``updated_at``
comparison, so an older delivery can never overwrite a newer one that committed meanwhile.
Racing first inserts of the same issue, comment or domain, and a locked database, are retried.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select, tuple_, update
from sqlalchemy.exc import DataError, IntegrityError, OperationalError

from adaptune.errors import AdaptuneError, DomainError, StoreError
from adaptune.ingest.normalize import RowError, check_numbers, load_json
from adaptune.store import Store, schema
from adaptune.store.domains import default_domain_name, domain_of, ensure_domain, repo_problem
from adaptune.store.issues import upsert_comments, upsert_issues
from adaptune.types import Comment, Issue

log = logging.getLogger(__name__)

ATTEMPTS = 6
"""How many times a delivery's transaction is tried when it races another one."""
MAX_KEY_CHARS = 300
"""Longest delivery key the ``webhook_deliveries.delivery_key`` column holds."""
MAX_REPO_CHARS = 200
"""Longest repository or project name the ``issues.repo`` column holds."""
_PREFIX = "sha256="


@dataclass(frozen=True)
class WebhookResult:
    """What a webhook route answers, and which issues changed."""

    status: int
    """HTTP status the route returns."""
    body: dict[str, Any]
    """JSON body: ``{"status": "stored"|"duplicate"|"ignored"|"pong", "event", ...}``, or
    ``{"detail": "..."}`` on errors."""
    issues: tuple[tuple[str, str, int], ...] = ()
    """``(source, repo, number)`` of each issue inserted or updated, for the similar-issue index."""
    new_domain: str | None = None
    """The domain this delivery created (its index and classifier are still to be built)."""


class WebhookError(AdaptuneError):
    """A delivery that cannot be accepted, with the HTTP status that says why."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail

    def result(self) -> WebhookResult:
        """The answer the route sends back."""
        return WebhookResult(self.status, {"detail": self.detail})


@dataclass(frozen=True)
class Delivery:
    """One accepted delivery, identified per source by its key."""

    source: str
    """``github`` or ``jira``."""
    key: str
    """GitHub: ``X-GitHub-Delivery`` (the delivery id alone: the hook id header is not signed);
    Jira: ``X-Atlassian-Webhook-Identifier``, or ``sha256:<body digest>`` without it."""
    event: str
    """What happened, e.g. ``issues.opened`` or ``jira:issue_updated``."""
    repo: str
    """``owner/name`` or the Jira project key; decides the domain."""
    issues: list[Issue] = field(default_factory=list)
    """Issues (and PRs) to upsert."""
    comments: list[Comment] = field(default_factory=list)
    """Comments to upsert."""
    note: str | None = None
    """Set when the delivery is recorded but changes nothing (a deletion), saying why."""


def _hmac_matches(secret: str, raw: bytes, header: str | None) -> bool:
    if not secret or not header:
        return False
    given = header.strip()
    if not given.lower().startswith(_PREFIX):
        return False
    expected = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest().encode()
    return hmac.compare_digest(expected, given[len(_PREFIX) :].lower().encode("utf-8", "replace"))


def verify_github_signature(secret: str, raw: bytes, header: str | None) -> bool:
    """Whether ``X-Hub-Signature-256`` (``sha256=<hex>``) is the HMAC-SHA256 of ``raw``."""
    return _hmac_matches(secret, raw, header)


def verify_jira_signature(secret: str, raw: bytes, header: str | None) -> bool:
    """Whether Jira's ``X-Hub-Signature`` (``sha256=<hex>``) is the HMAC-SHA256 of ``raw``."""
    return _hmac_matches(secret, raw, header)


def lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers with lower-case names (HTTP header names are case-insensitive)."""
    return {str(k).lower(): v for k, v in headers.items()}


def check_signature(
    verify: Callable[[str, bytes, str | None], bool],
    secret: str | None,
    raw: bytes,
    header: str | None,
    names: tuple[str, str],
) -> None:
    """Refuse the delivery (503 or 401) unless ``header`` signs ``raw`` with ``secret``.

    ``names`` is ``(signature header, secret's environment variable)`` for the messages; neither
    the secret nor the signature is ever logged or echoed.
    """
    header_name, env_var = names
    if not secret:
        raise WebhookError(
            503,
            f"Webhooks from this tracker are off: set {env_var} to the webhook's secret and "
            "restart the service (unsigned deliveries are never accepted).",
        )
    if not verify(secret, raw, header):
        what = "missing" if not header else "wrong"
        log.warning("webhook refused: %s signature %s", header_name, what)
        raise WebhookError(
            401,
            f"The {header_name} signature is {what}; make the webhook's secret equal to {env_var}.",
        )


def parse_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a 422 naming what is wrong with it (``NaN``, ``Infinity``
    and numbers beyond any float or integer conversion are refused naming their field)."""
    if not raw.strip():
        raise WebhookError(422, "The body is empty; send the event's JSON payload.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebhookError(422, f"The body is not UTF-8 (byte {exc.start}).") from None
    try:
        payload, odd = load_json(text)
        if odd:
            check_numbers(payload)
    except RowError as exc:
        raise row_error("body", exc) from None
    except json.JSONDecodeError as exc:
        raise WebhookError(422, f"The body is not JSON: {exc.msg} at line {exc.lineno}.") from None
    except RecursionError:  # deeply nested arrays or objects: no real payload looks like this
        raise WebhookError(422, "The body's JSON is nested too deeply.") from None
    if not isinstance(payload, dict):
        raise WebhookError(422, f"The body is a JSON {type(payload).__name__}, not an object.")
    return payload


def row_error(path: str, exc: RowError) -> WebhookError:
    """A normaliser's complaint about the object at ``path`` as a 422 naming the field
    (``issue.number: must be from 1 to ...``)."""
    if exc.field and path == "body":
        return WebhookError(422, f"{exc.field}: {exc.problem}.")
    if exc.field:
        return WebhookError(422, f"{path}.{exc.field}: {exc.problem}.")
    return WebhookError(422, f"{path}: {exc}.")


def check_repo(source: str, repo: str, path: str) -> str:
    """``repo`` when it is a valid repository name (GitHub) or project key (Jira), else a 422
    naming ``path``."""
    problem = repo_problem(source, repo)
    if problem is not None:
        raise WebhookError(422, f"{path}: {problem}; nothing was stored.")
    return repo


def dig(obj: Any, path: str) -> Any:
    """The value at dotted ``path`` in nested objects, or ``None``."""
    for part in path.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def need_object(payload: dict[str, Any], path: str) -> dict[str, Any]:
    """The object at ``path``, or a 422 naming it."""
    value = dig(payload, path)
    if not isinstance(value, dict):
        problem = "is missing" if value is None else "is not an object"
        raise WebhookError(422, f"{path} {problem}.")
    return value


def need_text(payload: dict[str, Any], path: str) -> str:
    """The non-empty string at ``path``, or a 422 naming it."""
    value = dig(payload, path)
    if not isinstance(value, str) or not value:
        problem = "is missing" if value in (None, "") else "is not text"
        raise WebhookError(422, f"{path} {problem}.")
    return value


def check_key(key: str, header: str) -> str:
    """``key`` when it fits the delivery table, else a 400 naming the header."""
    if len(key) > MAX_KEY_CHARS:
        raise WebhookError(400, f"{header} is longer than {MAX_KEY_CHARS} characters.")
    return key


class _Duplicate(Exception):
    """The delivery key is already recorded."""


class _UnknownRepo(Exception):
    """No domain holds the delivery's repository and new domains are not allowed."""


def deliver(store: Store, delivery: Delivery, new_domains: bool = False) -> WebhookResult:
    """Record ``delivery`` and upsert its rows in one transaction; a re-delivery is a no-op.

    A repository no domain holds gets its own domain only with ``new_domains``; otherwise the
    delivery is refused (422) and nothing is stored, so that it is taken once an admin has
    added the repository and the tracker delivers it again.
    """
    if len(delivery.repo) > MAX_REPO_CHARS:
        return WebhookError(422, f"The repository name is over {MAX_REPO_CHARS} chars.").result()
    for attempt in range(ATTEMPTS):
        try:
            body, changed, created = _apply(store, delivery, new_domains)
        except _UnknownRepo:
            return _unknown(delivery)
        except _Duplicate:
            if _recorded(store, delivery):
                return _duplicate(delivery)
        except (IntegrityError, DomainError) as exc:
            # Another transaction inserted the same issue, comment, domain or delivery first
            # (on PostgreSQL, ensure_domain can then see the other's domain half-way through).
            if _recorded(store, delivery):
                return _duplicate(delivery)
            if attempt == ATTEMPTS - 1:
                why = exc.orig if isinstance(exc, IntegrityError) else exc
                raise StoreError(f"Storing a {delivery.source} webhook failed: {why}") from None
        except DataError as exc:
            return WebhookError(422, f"A value does not fit the store: {exc.orig}").result()
        except OperationalError as exc:
            if not _transient(exc):
                raise StoreError(
                    f"Storing a {delivery.source} webhook failed: {exc.orig}"
                ) from None
        else:
            log.info("webhook %s %s stored (%s)", delivery.source, delivery.event, delivery.key)
            return WebhookResult(200, body, tuple(changed), body["domain"] if created else None)
        time.sleep(random.uniform(0.005, 0.02) * 2**attempt)
    return WebhookResult(503, {"detail": "The database stayed busy; deliver the event again."})


def _unknown(d: Delivery) -> WebhookResult:
    """The 422 for a repository no domain holds, saying how to admit it."""
    source = f"{d.source}:{d.repo}"
    name = default_domain_name(d.source, d.repo)
    log.warning("webhook %s %s refused: no domain holds %s", d.source, d.event, source)
    return WebhookError(
        422,
        f"No domain holds {source}, so nothing was stored. Add it with `adaptune domains add "
        f"{name} --source {source}` (or name an existing domain), or set "
        "ADAPTUNE_WEBHOOK_NEW_DOMAINS=true to let deliveries create domains; then deliver the "
        "event again.",
    ).result()


def _apply(
    store: Store, d: Delivery, new_domains: bool
) -> tuple[dict[str, Any], list[tuple[str, str, int]], bool]:
    t = schema.webhook_deliveries
    with store.begin() as conn:
        try:
            row_id = conn.execute(
                t.insert().values(
                    source=d.source,
                    delivery_key=d.key,
                    event=d.event[:100],
                    outcome="{}",
                    received_at=datetime.now(UTC),
                )
            ).inserted_primary_key[0]
        except IntegrityError:
            raise _Duplicate from None
        domain = domain_of(conn, d.source, d.repo)
        created = domain is None
        if created and not new_domains:
            raise _UnknownRepo  # rolls back the delivery row as well
        if domain is None:
            domain = ensure_domain(conn, d.source, d.repo)
        _lock(conn, d.issues, d.comments)
        changed, listed = [], []
        for issue in d.issues:
            counts = upsert_issues(conn, [issue])
            ident = (issue.source, issue.repo, issue.number)
            if counts.inserted or counts.updated:
                changed.append(ident)
            listed.append({"source": ident[0], "repo": ident[1], "number": ident[2]})
        ccounts = upsert_comments(conn, d.comments)
        body: dict[str, Any] = {
            "status": "ignored" if d.note else "stored",
            "event": d.event,
            "domain": domain,
            "issues": listed,
            "changed": len(changed),
            "comments": ccounts.inserted + ccounts.updated,
        }
        if d.note:
            body["detail"] = d.note
        conn.execute(update(t).where(t.c.id == row_id).values(outcome=json.dumps(body)))
    return body, changed, created


def _lock(conn: Connection, issues: Iterable[Issue], comments: Iterable[Comment]) -> None:
    """Lock the stored rows about to be compared and replaced (a no-op on SQLite)."""
    it, ct = schema.issues, schema.comments
    keys = sorted({(i.source, i.repo, i.number) for i in issues})
    if keys:
        where = tuple_(it.c.source, it.c.repo, it.c.number).in_(keys)
        conn.execute(select(it.c.id).where(where).order_by(it.c.id).with_for_update())
    ckeys = sorted({(c.source, c.repo, c.comment_id) for c in comments})
    for start in range(0, len(ckeys), 500):
        where = tuple_(ct.c.source, ct.c.repo, ct.c.comment_id).in_(ckeys[start : start + 500])
        conn.execute(select(ct.c.id).where(where).order_by(ct.c.id).with_for_update())


def _recorded(store: Store, d: Delivery) -> bool:
    t = schema.webhook_deliveries
    with store.engine.connect() as conn:
        found = conn.execute(
            select(t.c.id).where(t.c.source == d.source, t.c.delivery_key == d.key)
        ).first()
    return found is not None


def _duplicate(d: Delivery) -> WebhookResult:
    log.info("webhook %s %s is a re-delivery (%s)", d.source, d.event, d.key)
    return WebhookResult(200, {"status": "duplicate", "event": d.event, "delivery": d.key})


def _transient(exc: OperationalError) -> bool:
    """A lock or serialisation failure that a retry can get past."""
    if getattr(exc.orig, "sqlstate", None) in ("40001", "40P01", "55P03"):
        return True
    text = str(exc.orig).lower()
    return "database is locked" in text or "database table is locked" in text
