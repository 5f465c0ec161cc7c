"""The API keeps its contract under hostile values: extreme numbers, NaN, deep nesting, loose
types. Every endpoint of the OpenAPI schema is reached in-process with Hypothesis-chosen values
in its body fields, path and query parameters, and every numeric field of a signed webhook
payload; each answer is a documented 4xx (or a success), never a 5xx. The schemathesis run over
a real server with every phase lives in ``test_contract_schemathesis.py``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serve_fixtures import AUTH, SECRET, signed_app

HUGE = 1180591620717411303424  # the probe's number: 2**70
EXTREME_NUMBERS = (
    HUGE,
    2**63,
    2**63 - 1,
    -(2**63) - 1,
    -1,
    0,
    10**400,
    1e308,
    -1e308,
    5e-324,
    math.nan,
    math.inf,
    -math.inf,
)
EXTREME = (
    st.sampled_from(EXTREME_NUMBERS)
    | st.integers()
    | st.floats()
    | st.booleans()
    | st.none()
    | st.sampled_from(["", "0", "9" * 400, "\x00", "NaN", "💥" * 50])
    | st.lists(st.integers(), max_size=3)
    | st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)
)
ALLOWED = {200, 201, 202, 303, 401, 403, 404, 409, 413, 415, 422, 429}
"""What the schema documents for bad input (and success)."""
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def client(store, tmp_path):
    app = signed_app(store, tmp_path, max_body_bytes=200_000)
    app.state.service.warm()  # a cold /readyz answers 503 by design
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _raw(value: Any) -> bytes:
    """JSON as a careless client writes it: NaN and Infinity as bare tokens, huge integers."""
    return json.dumps(value, allow_nan=True).encode()


def _check(response, what: str) -> None:
    assert response.status_code < 500, f"{what}: {response.status_code} {response.text[:300]}"
    assert response.status_code in ALLOWED, f"{what}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400 and "json" in response.headers.get("content-type", ""):
        assert response.json()["detail"], what


def _operations(app) -> list[tuple[str, str, dict]]:
    spec = app.openapi()
    out = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            out.append((method.upper(), path, op))
    return out


def _body_fields(app, op: dict) -> list[str]:
    content = op.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema", {})
    for option in [schema, *schema.get("anyOf", [])]:
        ref = option.get("$ref")
        if ref:
            component = app.openapi()["components"]["schemas"][ref.rsplit("/", 1)[-1]]
            return list(component.get("properties", {}))
    return []


def test_every_endpoint_answers_extreme_values_with_a_4xx(client):
    app = client.app
    operations = [o for o in _operations(app) if not o[1].startswith("/webhooks/")]
    assert len(operations) >= 15

    @SETTINGS
    @given(data=st.data())
    def run(data) -> None:
        for method, path, op in operations:
            params = {}
            url = path
            for p in op.get("parameters", []):
                value = str(data.draw(EXTREME, label=p["name"]))
                if p["in"] == "path":
                    url = url.replace("{" + p["name"] + "}", quote(value, safe="") or "x")
                else:
                    params[p["name"]] = value
            fields = _body_fields(app, op)
            body = None
            if "requestBody" in op:
                chosen = data.draw(st.lists(st.sampled_from(fields or ["x"]), max_size=4))
                body = {name: data.draw(EXTREME, label=name) for name in chosen}
                if "title" in fields and "title" not in body:
                    body["title"] = "KeyError"
            headers = {**AUTH}
            content = None
            if body is not None:
                form = "application/x-www-form-urlencoded" in op["requestBody"]["content"]
                headers["Content-Type"] = (
                    "application/x-www-form-urlencoded" if form else "application/json"
                )
                content = _raw(body)
            r = client.request(method, url, params=params, content=content, headers=headers)
            _check(r, f"{method} {url} {params} {content!r:.200}")

    run()


@pytest.mark.parametrize("depth", [100, 5_000, 50_000])
def test_deep_nesting_is_refused_on_every_json_endpoint(client, depth):
    for method, path, op in _operations(client.app):
        if "application/json" not in op.get("requestBody", {}).get("content", {}):
            continue
        url = path.replace("{ticket_id}", "t").replace("{version}", "v")
        for raw in (b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth):
            headers = {**AUTH, "Content-Type": "application/json"}
            if path.startswith("/webhooks/"):
                sig = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
                headers |= {
                    "X-Hub-Signature-256": sig,
                    "X-Hub-Signature": sig,
                    "X-GitHub-Event": "issues",
                    "X-GitHub-Delivery": f"deep-{depth}",
                }
            r = client.request(method, url, content=raw, headers=headers)
            _check(r, f"{method} {path} depth {depth}")
            assert r.status_code in (401, 404, 413, 422), (path, r.status_code, r.text[:200])


def _github_issue(number: Any = 7) -> dict:
    return {
        "number": number,
        "title": "Streaming hangs",
        "body": "b",
        "state": "open",
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z",
        "html_url": "https://github.com/o/r/issues/7",
        "user": {"login": "u", "id": 1},
        "labels": [{"name": "bug", "id": 2}],
        "comments": 0,
        "id": 99,
    }


GITHUB_CASES = {  # event: (payload, dotted paths of its numbers)
    "issues": (
        {"action": "opened", "issue": _github_issue(), "repository": {"full_name": "o/r"}},
        ("issue.number", "issue.id", "issue.comments", "issue.user.id"),
    ),
    "issue_comment": (
        {
            "action": "created",
            "issue": _github_issue(),
            "comment": {"id": 5, "body": "c", "created_at": "2024-01-01T00:00:00Z"},
            "repository": {"full_name": "o/r"},
        },
        ("issue.number", "comment.id"),
    ),
    "pull_request": (
        {
            "action": "closed",
            "pull_request": {**_github_issue(8), "merged_at": "2024-01-02T00:00:00Z"},
            "repository": {"full_name": "o/r"},
        },
        ("pull_request.number", "pull_request.id"),
    ),
}


def _set(payload: dict, dotted: str, value: Any) -> dict:
    out = json.loads(json.dumps(payload))
    node = out
    *parents, last = dotted.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    return out


def _sign(raw: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()


@SETTINGS
@given(
    event=st.sampled_from(sorted(GITHUB_CASES)),
    value=st.sampled_from(EXTREME_NUMBERS) | st.integers() | st.floats() | st.booleans(),
    which=st.integers(min_value=0, max_value=3),
)
def test_signed_github_payloads_with_extreme_numbers_never_500(client, event, value, which):
    payload, paths = GITHUB_CASES[event]
    dotted = paths[which % len(paths)]
    raw = _raw(_set(payload, dotted, value))
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": hashlib.sha1(raw).hexdigest(),
        "X-Hub-Signature-256": _sign(raw),
        "Content-Type": "application/json",
    }
    r = client.post("/webhooks/github", content=raw, headers=headers)
    _check(r, f"{event} {dotted}={value!r}")
    key = dotted.rsplit(".", 1)[-1]
    if dotted.endswith("number") and (isinstance(value, bool) or not isinstance(value, int)):
        assert r.status_code == 422 and key in r.json()["detail"], r.text
    if dotted.endswith("number") and isinstance(value, int) and not 0 < value < 2**63:
        assert r.status_code == 422 and key in r.json()["detail"], r.text


def test_the_probes_huge_number_is_a_422_naming_the_field(client):
    payload, _ = GITHUB_CASES["issues"]
    raw = _raw(_set(payload, "issue.number", HUGE))
    headers = {
        "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": "huge",
        "X-Hub-Signature-256": _sign(raw),
        "Content-Type": "application/json",
    }
    r = client.post("/webhooks/github", content=raw, headers=headers)
    assert r.status_code == 422 and "number" in r.json()["detail"], r.text
    assert r.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize(
    "body",
    [
        {"title": "t", "generate": 0},
        {"title": "t", "generate": "false"},
        {"title": "t", "max_new_tokens": 1.0},
        {"title": "t", "max_new_tokens": HUGE},
        {"title": 5},
    ],
)
def test_ticket_fields_are_strictly_typed(client, body):
    r = client.post(
        "/v1/tickets", content=_raw(body), headers={**AUTH, "Content-Type": "application/json"}
    )
    assert r.status_code == 422, r.text
    field = next(k for k in body if k != "title" or len(body) == 1)
    assert field in r.json()["detail"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/tickets/x/feedback", {"rating": "up", "resolved": 0}, "resolved"),
        ("/v1/jobs/train", {"promote": 0}, "promote"),
        ("/v1/jobs/train", {"epochs": math.nan}, "epochs"),
        ("/v1/jobs/train", {"tolerance": math.inf}, "tolerance"),
        ("/v1/jobs/train", {"max_steps": HUGE}, "max_steps"),
    ],
)
def test_booleans_and_numbers_are_strict_elsewhere(client, path, body, field):
    r = client.post(path, content=_raw(body), headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 422 and field in r.json()["detail"], r.text


def test_an_unparseable_body_is_a_422_as_documented(client):
    for raw in (b"{", b"\xff\xfe", b"not json"):
        r = client.post(
            "/v1/tickets", content=raw, headers={**AUTH, "Content-Type": "application/json"}
        )
        assert r.status_code == 422, (raw, r.status_code, r.text)
        assert "422" in client.app.openapi()["paths"]["/v1/tickets"]["post"]["responses"]


def test_allow_lists_every_method_of_a_path(client):
    r = client.request("PUT", "/login")
    assert r.status_code == 405 and set(r.headers["allow"].split(", ")) >= {"GET", "POST"}
