"""GitHub webhooks (``issues``, ``issue_comment``, ``pull_request``) into the store.

Every action stores the current state of the issue or pull request the payload carries; the
store keeps whichever version has the newest ``updated_at``, so events may arrive in any order.
A pull request is stored as an issue row with ``is_pull_request`` and ``merged_at``, which is
what the dataset builder's ``pr_fixes`` reads to link a merged "fixes #N" PR to its issue.
Deletions (``issues.deleted``, ``issue_comment.deleted``) are recorded but keep the stored rows:
they were real when they were read, and the training windows are built from history.

A re-delivery is recognised by its ``X-GitHub-Delivery`` id alone: ``X-GitHub-Hook-Id`` is not
covered by the signature, so anyone replaying a signed body could change it at will.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, TypeVar

from adaptune.ingest.normalize import RowError, github_comment, github_issue
from adaptune.ingest.webhooks import (
    Delivery,
    WebhookError,
    WebhookResult,
    check_key,
    check_repo,
    check_signature,
    deliver,
    lower_headers,
    need_object,
    need_text,
    parse_object,
    row_error,
    verify_github_signature,
)
from adaptune.store import Store
from adaptune.types import Comment, Issue

T = TypeVar("T")

log = logging.getLogger(__name__)

SECRET_ENV = "ADAPTUNE_GITHUB_WEBHOOK_SECRET"
"""The environment variable that holds the secret GitHub signs deliveries with."""
EVENTS = ("issues", "issue_comment", "pull_request")
"""The events that are stored; ``ping`` is answered, any other event is ignored."""


def handle_github(
    store: Store,
    headers: Mapping[str, str],
    raw: bytes,
    secret: str | None,
    *,
    new_domains: bool = False,
) -> WebhookResult:
    """Verify, parse and store one GitHub delivery; the answer says what happened.

    200 ``stored`` / ``duplicate`` / ``pong``; 202 ``ignored`` for events adaptune does not
    store; 400 for a missing or oversized header, 422 for a body that cannot be stored or a
    repository no domain holds (unless ``new_domains``), nothing stored either way; 401 for a
    missing or wrong ``X-Hub-Signature-256``, 503 when no secret is configured.
    """
    h = lower_headers(headers)
    try:
        check_signature(
            verify_github_signature,
            secret,
            raw,
            h.get("x-hub-signature-256"),
            ("X-Hub-Signature-256", SECRET_ENV),
        )
        event = h.get("x-github-event", "").strip()
        if not event:
            raise WebhookError(400, "The X-GitHub-Event header is missing.")
        _delivery_key(h)  # GitHub sends it with every event: its absence is a bad request
        payload = parse_object(raw)  # every event's body is a JSON object, even one ignored
        if event != "ping" and event not in EVENTS:
            return _ignored(event)
        if event == "ping":
            return WebhookResult(
                200, {"status": "pong", "event": "ping", "zen": payload.get("zen")}
            )
        return deliver(store, _delivery(h, event, payload), new_domains)
    except WebhookError as exc:
        return exc.result()


def _ignored(event: str) -> WebhookResult:
    detail = f"adaptune stores {', '.join(EVENTS)} events; '{event[:100]}' was not stored."
    return WebhookResult(202, {"status": "ignored", "event": event[:100], "detail": detail})


def _delivery_key(h: Mapping[str, str]) -> str:
    """The ``X-GitHub-Delivery`` id: GitHub keeps it when a delivery is redelivered, and it
    is the key alone (migration 0004 rewrote the older ``<hook id>:<delivery id>`` keys)."""
    delivery = h.get("x-github-delivery", "").strip()
    if not delivery:
        raise WebhookError(400, "The X-GitHub-Delivery header is missing.")
    return check_key(delivery, "X-GitHub-Delivery")


def _delivery(h: Mapping[str, str], event: str, payload: dict[str, Any]) -> Delivery:
    key = _delivery_key(h)
    action = need_text(payload, "action")
    repo = check_repo("github", need_text(payload, "repository.full_name"), "repository.full_name")
    name = f"{event}.{action}"
    if event == "pull_request":
        return Delivery("github", key, name, repo, issues=[_pull_request(payload, repo)])
    issue = _convert(github_issue, "issue", need_object(payload, "issue"), repo)
    if event == "issues" and action == "deleted":
        note = "Deleted issues are recorded; the stored issue is kept."
        return Delivery("github", key, name, repo, note=note)
    comments: list[Comment] = []
    if event == "issue_comment" and action != "deleted":
        obj = need_object(payload, "comment")
        comments.append(_convert(github_comment, "comment", obj, repo, issue.number))
    return Delivery("github", key, name, repo, issues=[issue], comments=comments)


def _pull_request(payload: dict[str, Any], repo: str) -> Issue:
    """The PR as an issue row; its webhook object has ``merged_at`` at the top level."""
    pr = need_object(payload, "pull_request")
    # github_issue recognises a PR by the ``pull_request`` sub-object of the issues API.
    shaped = {**pr, "pull_request": {"merged_at": pr.get("merged_at"), "url": pr.get("url")}}
    return replace(_convert(github_issue, "pull_request", shaped, repo), raw=pr)


def _convert(convert: Callable[..., T], path: str, obj: dict[str, Any], *args: Any) -> T:
    """``convert(obj, *args)`` with a normaliser's complaint turned into a 422 naming ``path``."""
    try:
        return convert(obj, *args)
    except RowError as exc:
        raise row_error(path, exc) from None
