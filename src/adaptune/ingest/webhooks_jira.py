"""Jira admin webhooks (issue and comment events) into the store.

``jira:issue_created`` / ``jira:issue_updated`` carry the whole issue, which is stored through
the same conversion as a JQL search (:func:`jira_issue`), with the comments it embeds. Comment
events carry the comment and, on Jira Cloud, a reduced issue (key, summary, project, status but
no dates): the comment is always stored, the issue only when the payload holds all of it.
Deletions are recorded and keep the stored rows, as for GitHub.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Any

from adaptune.ingest.jira_adf import _split_key, jira_comment, jira_issue
from adaptune.ingest.normalize import RowError
from adaptune.ingest.webhooks import (
    Delivery,
    WebhookError,
    WebhookResult,
    check_key,
    check_repo,
    check_signature,
    deliver,
    dig,
    lower_headers,
    need_object,
    need_text,
    parse_object,
    row_error,
    verify_jira_signature,
)
from adaptune.store import Store
from adaptune.types import Comment

log = logging.getLogger(__name__)

SECRET_ENV = "ADAPTUNE_JIRA_WEBHOOK_SECRET"
"""The environment variable that holds the secret Jira signs deliveries with."""
ISSUE_EVENTS = ("jira:issue_created", "jira:issue_updated")
COMMENT_EVENTS = ("comment_created", "comment_updated")
DELETE_EVENTS = ("jira:issue_deleted", "comment_deleted")


def handle_jira(
    store: Store,
    headers: Mapping[str, str],
    raw: bytes,
    secret: str | None,
    *,
    new_domains: bool = False,
) -> WebhookResult:
    """Verify, parse and store one Jira delivery; the answer says what happened.

    200 ``stored`` / ``duplicate``; 202 ``ignored`` for other events; 400 for an oversized
    ``X-Atlassian-Webhook-Identifier``, 422 for a body that cannot be stored or a project no
    domain holds (unless ``new_domains``), nothing stored either way; 401 for a missing or
    wrong ``X-Hub-Signature``, 503 when no secret is configured.
    """
    h = lower_headers(headers)
    try:
        check_signature(
            verify_jira_signature,
            secret,
            raw,
            h.get("x-hub-signature"),
            ("X-Hub-Signature", SECRET_ENV),
        )
        payload = parse_object(raw)
        event = need_text(payload, "webhookEvent")
        if event not in ISSUE_EVENTS + COMMENT_EVENTS + DELETE_EVENTS:
            detail = "adaptune stores Jira issue and comment events only."
            body = {"status": "ignored", "event": event[:100], "detail": detail}
            return WebhookResult(202, body)
        return deliver(store, _delivery(_key(h, raw), event, payload), new_domains)
    except WebhookError as exc:
        return exc.result()


def _key(h: Mapping[str, str], raw: bytes) -> str:
    """Jira keeps ``X-Atlassian-Webhook-Identifier`` across retries of one delivery."""
    ident = h.get("x-atlassian-webhook-identifier", "").strip()
    if ident:
        return check_key(ident, "X-Atlassian-Webhook-Identifier")
    # Older Jira Server releases send no identifier. Their body carries the event's timestamp,
    # so a retry repeats it byte for byte: its digest stands in for the identifier.
    return f"sha256:{hashlib.sha256(raw).hexdigest()}"


def _delivery(key: str, event: str, payload: dict[str, Any]) -> Delivery:
    obj = need_object(payload, "issue")
    try:
        issue_key, prefix, number = _split_key(obj)
    except RowError as exc:
        raise row_error("issue", exc) from None
    project = dig(obj, "fields.project.key")
    if isinstance(project, str) and project:
        check_repo("jira", project, "issue.fields.project.key")
    else:
        project = check_repo("jira", prefix, "issue.key")
    if event in DELETE_EVENTS:
        note = f"{event} is recorded; the stored rows of {issue_key} are kept."
        return Delivery("jira", key, event, project, note=note)
    issues = []
    if event in ISSUE_EVENTS or dig(obj, "fields.created") is not None:
        try:
            issues.append(jira_issue(obj, project=project))
        except RowError as exc:
            raise row_error("issue", exc) from None
    comments = _embedded(obj, project, number)
    if event in COMMENT_EVENTS or "comment" in payload:
        try:
            comments.append(jira_comment(need_object(payload, "comment"), project, number))
        except RowError as exc:
            raise row_error("comment", exc) from None
    return Delivery("jira", key, event, project, issues=issues, comments=comments)


def _embedded(obj: dict[str, Any], project: str, number: int) -> list[Comment]:
    """The comments an issue event embeds; a malformed one is skipped, not fatal."""
    found = dig(obj, "fields.comment.comments")
    out = []
    for item in found if isinstance(found, list) else []:
        try:
            out.append(jira_comment(item, project, number))
        except RowError as exc:
            log.warning("jira webhook: skipped a comment of issue %s: %s", obj.get("key"), exc)
    return out
