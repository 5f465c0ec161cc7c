"""Schemathesis hooks for the contract test: sign webhook bodies as a tracker would.

Loaded by ``schemathesis run`` through ``SCHEMATHESIS_HOOKS=schemathesis_hooks``. Every body
sent to ``/webhooks/github`` or ``/webhooks/jira`` is serialised here exactly as the
requests transport will send it and signed with ``ADAPTUNE_TEST_WEBHOOK_SECRET``, so the
fuzzer's payloads get past the signature check and reach the parsers and the store, where
the outside probe found its 500. The other headers are the generator's (the schema documents
them).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os

import schemathesis
from schemathesis.core.parameters import ParameterLocation


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
        # What the requests transport will send: ``requests`` serialises ``json=`` with these
        # defaults (the body is left as generated, so schemathesis still validates it as such).
        try:
            raw = json.dumps(body, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError):
            return  # not JSON: requests refuses to send it anyway
    headers = dict(case.headers or {})
    signature = "sha256=" + hmac.new(secret, raw, hashlib.sha256).hexdigest()
    # Headers generated as negative data (a signature missing or empty, say) stay as they were
    # generated, and are refused; otherwise the signature the generator made up is replaced.
    meta = getattr(case, "meta", None)
    if meta is not None and meta.is_negative_at(ParameterLocation.HEADER):
        return
    for name in ("X-Hub-Signature-256", "X-Hub-Signature"):
        if name in headers:
            headers[name] = signature
    case.headers = headers
