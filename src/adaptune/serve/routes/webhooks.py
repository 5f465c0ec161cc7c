"""``/webhooks/github`` and ``/webhooks/jira``: signed tracker events into the store.

The raw body is handed to the ingest stage's handlers, which check the HMAC signature before
parsing anything, record the delivery and store the issue in one transaction. Stored issues are
then added to the domain's similar-issue index. A repository no domain holds is refused (422)
unless ``ADAPTUNE_WEBHOOK_NEW_DOMAINS`` is on; a domain a delivery creates gets its index and
triage classifier built in the background (with ``ADAPTUNE_WARM``, as at start-up), and never
makes ``/readyz`` answer 503.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from adaptune.ingest.webhooks import WebhookResult
from adaptune.ingest.webhooks_github import handle_github
from adaptune.ingest.webhooks_jira import handle_jira

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
BODY = {
    "required": True,
    "content": {"application/json": {"schema": {"type": "object"}}},
}


def _header(name: str, description: str, required: bool = True) -> dict:
    # No maxLength: HTTP trims the spaces around a header's value before the app sees it, so a
    # limit on the value as sent cannot be enforced (the service refuses keys over 300 chars).
    return {
        "name": name,
        "in": "header",
        "required": required,
        "schema": {"type": "string", "minLength": 1},
        "description": description,
    }


SIGNED = "HMAC-SHA256 of the raw body with the webhook's secret: sha256=<hex>."
GITHUB_DOC = {
    "requestBody": BODY,
    "parameters": [
        _header("X-Hub-Signature-256", SIGNED),
        _header("X-GitHub-Event", "issues, issue_comment, pull_request or ping."),
        _header(
            "X-GitHub-Delivery", "The delivery's id (300 chars at most); a re-delivery repeats it."
        ),
    ],
}
JIRA_DOC = {
    "requestBody": BODY,
    "parameters": [
        _header("X-Hub-Signature", SIGNED),
        _header(
            "X-Atlassian-Webhook-Identifier",
            "The delivery's id (kept across retries); without it, the body's digest is the key.",
            required=False,
        ),
    ],
}
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Stored, a re-delivery (duplicate), or a ping's pong."},
    202: {"description": "An event adaptune does not store: recorded as ignored."},
    400: {"description": "A delivery header is missing or too long; nothing stored."},
    401: {"description": "The signature is missing or wrong."},
    413: {"description": "The body is over ADAPTUNE_MAX_BODY_BYTES."},
    422: {
        "description": "The body is not a usable payload, or no domain holds its repository "
        "(see ADAPTUNE_WEBHOOK_NEW_DOMAINS); nothing stored."
    },
    503: {"description": "No webhook secret is configured, or the database stayed busy."},
}


async def _deliver(request: Request, source: str) -> JSONResponse:
    state = request.app.state.service
    raw = await request.body()
    settings = state.settings
    if source == "github":
        secret = settings.github_webhook_secret
        handler: Callable[..., WebhookResult] = handle_github
    else:
        secret = settings.jira_webhook_secret
        handler = handle_jira
    key = secret.get_secret_value() if secret else None
    result = await run_in_threadpool(
        handler,
        state.store,
        dict(request.headers),
        raw,
        key,
        new_domains=settings.webhook_new_domains,
    )
    state.metrics.webhooks.labels(source, str(result.status)).inc()
    domain = result.body.get("domain") if isinstance(result.body, dict) else None
    if result.issues and domain:
        await run_in_threadpool(state.update_index, list(result.issues), domain)
    if result.new_domain and settings.warm:
        state.build_in_background(result.new_domain)
    return JSONResponse(result.body, status_code=result.status)


@router.post("/github", openapi_extra=GITHUB_DOC, responses=RESPONSES)
async def github(request: Request) -> JSONResponse:
    """A GitHub webhook delivery (``issues``, ``issue_comment``, ``pull_request``), signed with
    ``X-Hub-Signature-256``; a re-delivery of the same ``X-GitHub-Delivery`` is a no-op."""
    return await _deliver(request, "github")


@router.post("/jira", openapi_extra=JIRA_DOC, responses=RESPONSES)
async def jira(request: Request) -> JSONResponse:
    """A Jira webhook delivery signed with ``X-Hub-Signature``; re-deliveries keep the same
    ``X-Atlassian-Webhook-Identifier`` and are no-ops."""
    return await _deliver(request, "jira")
