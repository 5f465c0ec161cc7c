"""Schemathesis hooks for the contract test: sign webhook bodies as a tracker would.

Loaded by ``schemathesis run`` through ``SCHEMATHESIS_HOOKS=schemathesis_hooks``. Every body
sent to ``/webhooks/github`` or ``/webhooks/jira`` is serialised here (so the bytes signed are
the bytes sent) and signed with ``ADAPTUNE_TEST_WEBHOOK_SECRET``, so the fuzzer's payloads get
past the signature check and reach the parsers and the store, where the outside probe found
its 500. The other headers are the generator's (the schema documents them).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os

import schemathesis


@schemathesis.hook
def before_call(ctx, case, kwargs) -> None:
    path = case.operation.path
    if not path.startswith("/webhooks/"):
        return
    secret = os.environ["ADAPTUNE_TEST_WEBHOOK_SECRET"].encode()
    body = case.body
    if type(body).__name__ == "NotSet":  # no body generated: nothing to sign
        return
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
    # Sign where the case carries a signature header: a case generated without one (negative
    # data) must stay unsigned, and is refused.
    for name in ("X-Hub-Signature-256", "X-Hub-Signature"):
        if name in headers:
            headers[name] = signature
    case.headers = headers
