"""``/webhooks/github`` and ``/webhooks/jira``: signed tracker events into the store.

The raw body is handed to the ingest stage's handlers, which check the HMAC signature before
parsing anything, record the delivery and store the issue in one transaction. Stored issues are
then added to the domain's similar-issue index.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
DOC = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


async def _deliver(request: Request, source: str) -> JSONResponse:
    from adaptune.ingest.webhooks import handle_github, handle_jira

    state = request.app.state.service
    raw = await request.body()
    settings = state.settings
    if source == "github":
        secret = settings.github_webhook_secret
        handler: Any = handle_github
    else:
        secret = settings.jira_webhook_secret
        handler = handle_jira
    key = secret.get_secret_value() if secret else None
    result = await run_in_threadpool(handler, state.store, dict(request.headers), raw, key)
    state.metrics.webhooks.labels(source, str(result.status)).inc()
    domain = result.body.get("domain") if isinstance(result.body, dict) else None
    if result.issues and domain:
        await run_in_threadpool(state.update_index, list(result.issues), domain)
    return JSONResponse(result.body, status_code=result.status)


@router.post("/github", openapi_extra=DOC, responses={401: {}, 413: {}, 422: {}, 503: {}})
async def github(request: Request) -> JSONResponse:
    """A GitHub webhook delivery (``issues``, ``issue_comment``, ``pull_request``), signed with
    ``X-Hub-Signature-256``; a re-delivery of the same ``X-GitHub-Delivery`` is a no-op."""
    return await _deliver(request, "github")


@router.post("/jira", openapi_extra=DOC, responses={401: {}, 413: {}, 422: {}, 503: {}})
async def jira(request: Request) -> JSONResponse:
    """A Jira webhook delivery signed with ``X-Hub-Signature``; re-deliveries keep the same
    ``X-Atlassian-Webhook-Identifier`` and are no-ops."""
    return await _deliver(request, "jira")
