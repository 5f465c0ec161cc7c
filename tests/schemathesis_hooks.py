"""Schemathesis hooks for the contract test: sign webhook bodies as a tracker would.

Loaded by ``schemathesis run`` through ``SCHEMATHESIS_HOOKS=schemathesis_hooks``. Every body
sent to ``/webhooks/github`` or ``/webhooks/jira`` is serialised here (so the bytes signed are
the bytes sent) and signed with ``ADAPTUNE_TEST_WEBHOOK_SECRET``, so the fuzzer's payloads get
past the signature check and reach the parsers and the store, where the outside probe found
its 500. Event and delivery headers the generator left out are filled in; the ones it chose
(including wrong ones) are kept.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import uuid

import schemathesis

GITHUB_EVENTS = ("issues", "issue_comment", "pull_request", "ping")


@schemathesis.hook
def before_call(ctx, case, kwargs) -> None:
    path = case.operation.path
    if not path.startswith("/webhooks/"):
        return
    secret = os.environ["ADAPTUNE_TEST_WEBHOOK_SECRET"].encode()
    body = case.body
    if isinstance(body, bytes):
        raw = body
    else:
        try:
            raw = json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")
        except (TypeError, ValueError):
            raw = str(body).encode("utf-8", "surrogatepass")
    case.body = raw
    headers = dict(case.headers or {})
    signature = "sha256=" + hmac.new(secret, raw, hashlib.sha256).hexdigest()
    if path.endswith("/github"):
        headers["X-Hub-Signature-256"] = signature
        headers.setdefault("X-GitHub-Event", random.choice(GITHUB_EVENTS))
        headers.setdefault("X-GitHub-Delivery", str(uuid.uuid4()))
    else:
        headers["X-Hub-Signature"] = signature
        headers.setdefault("X-Atlassian-Webhook-Identifier", str(uuid.uuid4()))
    headers.setdefault("Content-Type", "application/json")
    case.headers = headers
