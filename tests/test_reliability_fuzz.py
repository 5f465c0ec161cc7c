"""Bad input: schemathesis over the OpenAPI schema, hypothesis over every parser and file ingest,
and hand-made hostile requests (oversized, deeply nested, invalid UTF-8, re-signed, replayed).

Every answer to bad input is a 4xx with ``{"detail": ...}`` and stores nothing; no parser raises
anything but its documented rejection on any input.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import hmac
import json

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from adaptune.errors import AdaptuneError, IngestError
from adaptune.ingest import ingest
from adaptune.ingest.files import file_source
from adaptune.ingest.gh_export import gh_export_source
from adaptune.ingest.jira_adf import adf_to_text, jira_comment, jira_issue
from adaptune.ingest.normalize import RowError, cap_body, github_comment, github_issue, parse_time
from adaptune.ingest.webhooks import parse_object
from adaptune.ingest.webhooks_github import handle_github
from adaptune.ingest.webhooks_jira import handle_jira
from adaptune.serve import create_app, serve_settings
from adaptune.store import schema
from serve_fixtures import AUTH, SECRET, TOKEN, seed_store, signed, signed_app
from test_parse import CONTRACTS, NATIVE_CRASHES

FAST = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=25,
)


def _app(store, tmp_path):
    return signed_app(store, tmp_path, max_body_bytes=64_000)


def _count(store, table) -> int:
    with store.begin() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


# --- schemathesis: every operation of the OpenAPI schema, default checks, bounded examples ---


SEMANTIC = [schemathesis.checks.positive_data_acceptance]
"""Excluded: a schema-valid body naming a domain that does not exist is refused with 422 (the
API's documented answer for an unknown domain), which this check counts as a failure."""


def test_openapi_operations_never_answer_5xx(store, tmp_path):
    """Schemathesis' default checks on every operation; a 5xx anywhere fails the test."""
    app = _app(store, tmp_path)
    app.state.service.warm()  # a cold /readyz answers 503 by design
    schema_ = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema_.get_all_operations()]
    assert len(operations) >= 15, "every route is in the schema"
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
        def run(case) -> None:
            case.call_and_validate(
                headers={**AUTH, **(case.headers or {})}, excluded_checks=SEMANTIC
            )

        try:
            run()
        except (
            Exception,
            BaseExceptionGroup,
        ) as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}"[:1500])
    assert failures == [], "\n\n".join(failures)


# --- hypothesis: parsers and normalisers never crash on any input ---

TEXT = st.text(max_size=400) | st.sampled_from(
    [
        "Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\nKeyError: 'a'",
        "### System Info\n- `transformers` version: 4.1\n- Platform: Linux\n```\ncode",
        "fixes #12, closes o/r#3, duplicate of #4 " * 3,
        "-----BEGIN RSA PRIVATE KEY-----\nabc",
        "<!-- never closed " + "x" * 50,
    ]
)


SECRETISH = st.lists(
    st.sampled_from(
        [
            "password=hunter22x ",
            "ghp_" + "a1" * 15,
            " sk-abc123def456ghi789jkl",
            "mia@example.org ",
            "Bearer abcdef0123456789xyz ",
            "token: ",
            "\n",
            "x",
        ]
    )
).map("".join)


@FAST
@given(text=TEXT | SECRETISH | st.none())
def test_text_parsers_accept_any_text(text):
    from adaptune.dataset.parse.environment import Environment, parse_environment, summary
    from adaptune.dataset.parse.links import duplicate_of, fixed_issues
    from adaptune.dataset.parse.models import find_models
    from adaptune.dataset.parse.sections import clean_body, split_sections, strip_html_comments
    from adaptune.dataset.parse.traceback import (
        cut_log,
        error_signature,
        find_tracebacks,
        normalise_message,
    )
    from adaptune.dataset.scrub import find_secrets, scrub

    if text is None:  # a missing body reads as an empty one
        assert clean_body(None) == strip_html_comments(None) == normalise_message(None) == ""
        assert cut_log(None, 100) == scrub(None) == summary(parse_environment(None)) == ""
        assert split_sections(None) == {} and parse_environment(None) == Environment()
        assert find_tracebacks(None) == [] and error_signature(None) is None
        assert find_models(None) == () and fixed_issues(None, "o/r") == ()
        assert duplicate_of(None, "o/r") is None and find_secrets(None) == []
        return
    for contract in CONTRACTS:  # what each parser keeps of the text: see test_parse
        contract(text)
    assert len(cut_log(text, 100)) <= 100
    scrubbed, secrets = scrub(text), find_secrets(text)
    # scrubbing leaves nothing to find, reports what it replaced, and changes nothing else
    assert scrub(scrubbed) == scrubbed and find_secrets(scrubbed) == []
    assert all(value in text for _kind, value in secrets)
    assert (secrets == []) == (scrubbed == text)


LINE_PIECES = st.sampled_from(
    [
        "Traceback (most recent call last):\n",
        '  File "/x/site-packages/vllm/a.py", line 3, in f\n',
        "ValueError: bad 12\n",
        "GGML_ASSERT(n > 0) failed",
        "CUDA error 2 at ggml.cu:12: out of memory",
        "SIGSEGV",
        "C:\\src\\ggml.c",
        "<frozen runpy>",
        "### 🐛 Describe_the bug!",
        "meta-llama/Llama-2-7b-hf",
        "/",
        " ",
    ]
)


@FAST
@given(line=st.text(max_size=200) | st.lists(LINE_PIECES | st.text(max_size=6)).map("".join))
def test_line_parsers_accept_any_line(line):
    import re

    from adaptune.dataset.parse.crash import crash_in_line, module_name
    from adaptune.dataset.parse.models import is_model_id
    from adaptune.dataset.parse.pytrace import python_tracebacks
    from adaptune.dataset.parse.sections import heading_key

    crash = crash_in_line(line)
    if crash is not None:  # read off the line, not made up
        assert crash.message in line
        assert crash.exc_type in line or crash.exc_type in NATIVE_CRASHES
        assert all(f.file in line and str(f.line) in line for f in crash.frames)
    # a module name is pieces of the path, joined by dots
    assert all(piece in line.replace("\\", "/") for piece in module_name(line).split("."))
    if is_model_id(line):
        org, _, name = line.partition("/")
        assert any(c.isalpha() for c in org) and any(c.isalpha() for c in name)
    key = heading_key(line)  # lower case, words only, single spaces: a fixed point
    assert key == " ".join(key.split()) == key.lower() and heading_key(key) == key
    assert not re.search(r"[^\w\s]|_", key)
    lines = line.splitlines()
    last = -1
    for start, end, tb in python_tracebacks(lines):  # in order, apart, within the text
        assert last < start <= end < len(lines)
        assert tb.message in lines[end] and tb.exc_type.split("(")[0] in lines[end]
        last = end


def _rejects_cleanly(fn, *args) -> None:
    with contextlib.suppress(RowError, AdaptuneError):
        fn(*args)


ISSUEISH = st.fixed_dictionaries(
    {},
    optional={
        "number": JSON | st.integers(),
        "title": JSON,
        "body": JSON,
        "state": st.sampled_from(["open", "closed"]) | JSON,
        "created_at": st.sampled_from(["2024-01-01T00:00:00Z", "yesterday"]) | JSON,
        "updated_at": JSON,
        "closed_at": JSON,
        "html_url": st.just("https://github.com/o/r/issues/1") | JSON,
        "labels": JSON,
        "user": JSON,
        "pull_request": JSON,
        "comments": JSON,
        "id": JSON,
        "key": JSON,
        "fields": JSON,
    },
)


GITHUB_ISSUES = st.fixed_dictionaries(
    {
        "number": st.integers(1, 2**31 - 1) | st.integers(1, 99).map(str),
        "title": st.text(max_size=20),
        "state": st.sampled_from(["open", "closed"]),
        "created_at": st.sampled_from(["2024-01-01T00:00:00Z", "2024-01-01T02:00:00+02:00"]),
    },
    optional={
        "id": st.integers(1, 2**40) | st.text(min_size=1, max_size=8),
        "body": st.none() | st.text(max_size=40),
        "closed_at": st.none() | st.just("2024-02-01T00:00:00Z"),
        "user": JSON,
        "labels": st.lists(st.fixed_dictionaries({"name": st.text(max_size=8)}) | st.text()) | JSON,
    },
)
"""Issues GitHub could send, so that the accepted path is exercised, not only rejections."""


@FAST
@given(
    obj=ISSUEISH | JSON | GITHUB_ISSUES,
    words=st.lists(st.text("abcxyz019", min_size=1, max_size=8), min_size=1, max_size=4),
)
def test_normalisers_accept_any_object_or_reject_it(obj, words):
    from datetime import timedelta

    def accepted(fn, *args):
        with contextlib.suppress(RowError, AdaptuneError):
            return fn(*args)
        return None

    # what a normaliser accepts, it maps field for field; anything else is a RowError
    if issue := accepted(github_issue, obj, "o/r"):
        assert (issue.repo, issue.number, issue.title) == ("o/r", int(obj["number"]), obj["title"])
        assert issue.state == obj["state"] and issue.body == obj.get("body") and issue.raw is obj
        assert issue.created_at == parse_time(obj["created_at"], "created_at")
        labels = obj.get("labels")
        if not isinstance(labels, list):  # 5, True or "ab" are no labels, not letters
            assert issue.labels == ()
    if comment := accepted(github_comment, obj, "o/r", 1):
        assert comment.comment_id == str(obj["id"]) and comment.body == obj.get("body")
    if issue := accepted(jira_issue, obj, "P", "https://x.atlassian.net"):
        assert (issue.source, issue.repo, issue.title) == ("jira", "P", obj["fields"]["summary"])
        assert issue.key == obj["key"] and issue.key.endswith(f"-{issue.number}")
    _rejects_cleanly(jira_comment, obj, "P", 1)
    if when := accepted(parse_time, obj, "created_at"):
        assert when.utcoffset() == timedelta(0)
    assert accepted(cap_body, obj) == (obj if isinstance(obj, str) else None)
    # ADF: text comes back unchanged, other values give "", and garbage beside real text
    # does not lose it
    text = adf_to_text(obj)
    assert text == obj if isinstance(obj, str) else text == text.strip("\n")
    if not isinstance(obj, dict | list | str):
        assert text == ""
    paragraphs = [{"type": "paragraph", "content": [{"type": "text", "text": w}]} for w in words]
    assert adf_to_text({"type": "doc", "content": paragraphs}) == "\n\n".join(words)
    beside = adf_to_text({"type": "doc", "content": [*paragraphs, obj]})
    assert beside.startswith("\n\n".join(words))


def test_adf_of_deep_nesting_does_not_overflow_the_stack():
    from adaptune.ingest.jira_adf import MAX_DEPTH

    def nested(levels: int) -> dict:
        node: dict = {"type": "text", "text": "leaf"}
        for _ in range(levels):
            node = {"type": "paragraph", "content": [node]}
        return node

    assert adf_to_text(nested(MAX_DEPTH - 1)) == "leaf"
    assert adf_to_text(nested(100_000)) == ""  # the leaf is below the cut-off


@FAST
@given(data=st.binary(max_size=600) | JSON.map(lambda v: json.dumps(v).encode()))
def test_webhook_bodies_never_crash_the_handlers(store, data):
    for handle, sig_header in (
        (handle_github, "X-Hub-Signature-256"),
        (handle_jira, "X-Hub-Signature"),
    ):
        sig = _sign(data)
        headers = {
            sig_header: sig,
            "X-GitHub-Event": "issues",
            "X-GitHub-Delivery": "fuzz",
            "X-Atlassian-Webhook-Identifier": "fuzz",
        }
        result = handle(store, headers, data, SECRET)
        assert 200 <= result.status < 500, result.body
        if result.status >= 400:
            assert result.body["detail"]
    with contextlib.suppress(AdaptuneError):
        parse_object(data)


ISSUE_LINES = st.builds(
    lambda n, when: json.dumps(
        {
            "number": n,
            "title": f"t{n}",
            "state": "open",
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": when,
            "html_url": f"https://github.com/o/r/issues/{n}",
        }
    ).encode(),
    st.integers(1, 4),
    st.sampled_from(["2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z"]),
)
"""Valid rows among the garbage; their numbers recur across examples, newer or not."""


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lines=st.lists(
        st.binary(max_size=120) | JSON.map(lambda v: json.dumps(v).encode()) | ISSUE_LINES,
        max_size=6,
    ),
    gz=st.booleans(),
    array=st.booleans(),
)
def test_file_ingest_accepts_any_file_or_rejects_it(store, tmp_path_factory, lines, gz, array):
    folder = tmp_path_factory.mktemp("f")
    plain = b"[" + b",".join(lines) + b"]" if array else b"\n".join(lines)
    truncated = gz and len(lines) % 2
    raw = gzip.compress(plain) if gz else plain
    if truncated:
        raw = raw[: max(10, len(plain) // 2)]
    path = folder / ("issues.jsonl.gz" if gz else "issues.jsonl")
    path.write_bytes(raw)
    as_array = plain[:64].lstrip()[:1] == b"["  # how the reader tells an array from lines
    for source in (file_source(path), gh_export_source(path)):
        before = _count(store, schema.issues)
        try:
            report = ingest(source, store)
        except AdaptuneError:
            continue
        # every row read is counted once, and the store grew by exactly the new ones
        counted = report.inserted + report.updated + report.unchanged + len(report.rejected)
        assert counted == report.seen
        assert _count(store, schema.issues) - before == report.inserted
        if not truncated:
            rows = (
                len(json.loads(plain.decode("utf-8")))
                if as_array
                else sum(1 for line in plain.split(b"\n") if line.strip())
            )
            assert report.seen == rows
        # a second run finds every accepted row already there
        again = ingest(source, store)
        assert again.inserted == again.updated == 0 and len(again.rejected) == len(report.rejected)
        assert again.unchanged == counted - len(report.rejected)


# --- hostile requests: the right 4xx, nothing stored ---


def _issue_payload(number: int = 901) -> dict:
    issue = {
        "number": number,
        "title": "Hostile",
        "body": "b",
        "state": "open",
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z",
        "html_url": f"https://github.com/o/r/issues/{number}",
    }
    return {"action": "opened", "issue": issue, "repository": {"full_name": "o/r"}}


def _sign(raw: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()


def _gh_headers(sig: str, delivery: str = "h-1") -> dict:
    return {
        "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sig,
        "Content-Type": "application/json",
    }


def test_hostile_requests_get_the_right_4xx_and_store_nothing(store, tmp_path):
    app = _app(store, tmp_path)
    issues, tickets = _count(store, schema.issues), _count(store, schema.tickets)
    deliveries = _count(store, schema.webhook_deliveries)
    raw, sig = signed(_issue_payload())
    other, _ = signed(_issue_payload(902))
    deep = b"[" * 100_000 + b"]" * 100_000
    deep_small = b"[" * 30_000 + b"]" * 30_000
    bad_utf8 = b'{"title": "\xff\xfe", "generate": false}'
    with TestClient(app) as c:

        def post(path, content, headers=None):
            return c.post(
                path,
                content=content,
                headers={**AUTH, "Content-Type": "application/json", **(headers or {})},
            )

        assert post("/v1/tickets", b'{"title": "' + b"x" * 70_000 + b'"}').status_code == 413
        assert post("/v1/tickets", deep).status_code == 413
        nested = post("/v1/tickets", deep_small)
        assert nested.status_code in (400, 422) and nested.json()["detail"]
        assert post("/v1/tickets", bad_utf8).status_code in (400, 422)
        assert post("/v1/tickets", b"{").status_code == 422
        assert post("/v1/tickets", b'{"title": 5}').status_code == 422
        no_auth = c.post("/v1/tickets", json={"title": "t", "generate": False})
        wrong = c.post("/v1/tickets", json={"title": "t"}, headers={"Authorization": "Bearer nope"})
        assert no_auth.status_code == wrong.status_code == 401
        assert (
            c.post("/webhooks/github", content=other, headers=_gh_headers(sig)).status_code == 401
        )
        assert c.post("/webhooks/github", content=raw, headers=_gh_headers("")).status_code == 401
        gh_deep = c.post(
            "/webhooks/github", content=deep_small, headers=_gh_headers(_sign(deep_small))
        )
        assert gh_deep.status_code == 422, gh_deep.text
        utf = b'{"action": "opened", "x": "\xff"}'
        assert (
            c.post("/webhooks/github", content=utf, headers=_gh_headers(_sign(utf))).status_code
            == 422
        )
        assert _count(store, schema.issues) == issues and _count(store, schema.tickets) == tickets
        assert _count(store, schema.webhook_deliveries) == deliveries
        first = c.post("/webhooks/github", content=raw, headers=_gh_headers(sig, "replay"))
        replay = c.post("/webhooks/github", content=raw, headers=_gh_headers(sig, "replay"))
    assert first.json()["status"] == "stored" and replay.json()["status"] == "duplicate"
    assert _count(store, schema.issues) == issues + 1
    assert _count(store, schema.webhook_deliveries) == deliveries + 1


# --- access: the 401/403 matrix over every route, derived from the app itself ---

PUBLIC = {
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/webhooks/github",
    "/webhooks/jira",
    "/login",
    "/logout",
}  # webhooks: signed instead; the log-in form checks the token it is given


def _scope_of(route) -> str | None:
    """The scope a route's ``require(scope)`` dependency asks for, if any."""
    for dep in route.dependant.dependencies:
        call = dep.call
        cells = dict(zip(call.__code__.co_freevars, call.__closure__ or (), strict=False))
        if "scope" in cells:
            return cells["scope"].cell_contents
    return None


def _api_routes(routes, kind):
    """The app's routes, looking inside included routers."""
    for r in routes:
        inner = getattr(r, "original_router", None)
        if inner is not None:
            yield from _api_routes(inner.routes, kind)
        elif isinstance(r, kind):
            yield r


def test_every_route_refuses_without_a_token_or_the_scope_and_stores_nothing(store, tmp_path):
    from fastapi.routing import APIRoute

    from adaptune.serve.tokens import create_token

    seed_store(store, tmp_path)
    app = create_app(
        store, serve_settings(api_token=TOKEN, open_reads=False, warm=False, generator="none")
    )
    tokens = {s: create_token(store, f"only-{s}", [s]) for s in ("read", "write", "admin")}
    before = [_count(store, t) for t in (schema.tickets, schema.feedback, schema.jobs)]
    matrix = []
    with TestClient(app) as c:
        routes = list(_api_routes(app.routes, APIRoute))
        assert {r.path for r in routes} >= set(app.openapi()["paths"]), "every route is checked"
        for route in routes:
            scope = _scope_of(route)
            if route.path in PUBLIC:
                assert scope is None, route.path
                continue
            assert scope in ("read", "write", "admin"), f"{route.path} has no token check"
            path = route.path.replace("{", "").replace("}", "")
            for method in route.methods:

                def call(headers, method=method, path=path):
                    body = {"title": "t", "rating": "up"}
                    return c.request(method, path, json=body, headers=headers).status_code

                row = (
                    call({}),
                    call({"Authorization": "Bearer wrong"}),
                    call({"Authorization": f"Basic {TOKEN}"}),
                    *(
                        call({"Authorization": f"Bearer {tokens[s]}"})
                        for s in ("read", "write", "admin")
                        if s != scope
                    ),
                )
                matrix.append((method, route.path, scope, row))
                assert row[:3] == (401, 401, 401), (method, route.path, row)
                assert all(code == 403 for code in row[3:]), (method, route.path, row)
        r = c.post("/v1/tickets", json={"title": "t"})
        assert r.headers["www-authenticate"] == "Bearer" and "Bearer" in r.json()["detail"]
        preflight = c.options(
            "/v1/adapters/rollback",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in preflight.headers
    assert {m for m, *_ in matrix} >= {"GET", "POST"} and len(matrix) >= 10
    assert [_count(store, t) for t in (schema.tickets, schema.feedback, schema.jobs)] == before


def test_rate_limit_is_per_client(store, tmp_path):
    from adaptune.serve.tokens import create_token

    seed_store(store, tmp_path)
    app = create_app(
        store,
        serve_settings(api_token=TOKEN, warm=False, generator="none", rate_limit_per_minute=2),
    )
    other = {"Authorization": f"Bearer {create_token(store, 'other', ['write'])}"}
    body = {"title": "KeyError", "generate": False}
    with TestClient(app) as c:
        first = [c.post("/v1/tickets", json=body, headers=AUTH).status_code for _ in range(3)]
        refused = c.post("/v1/tickets", json=body, headers=AUTH)
        theirs = [c.post("/v1/tickets", json=body, headers=other).status_code for _ in range(2)]
    assert first == [200, 200, 429] and theirs == [200, 200]
    assert refused.status_code == 429 and 0 < int(refused.headers["Retry-After"]) <= 60
    assert _count(store, schema.tickets) == 4


def test_file_ingest_rejects_a_deeply_nested_row(store, tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_text('{"x": ' + "[" * 30_000 + "]" * 30_000 + "}\n")
    report = ingest(file_source(path), store)
    assert report.inserted == 0 and len(report.rejected) == 1
    assert "nested too deeply" in report.rejected[0].reason
    array = tmp_path / "deep.json"
    array.write_text("[" * 30_000 + "]" * 30_000)
    with pytest.raises(IngestError, match="nested too deeply"):
        ingest(file_source(array), store)
