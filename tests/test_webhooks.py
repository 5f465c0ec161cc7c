"""Signed GitHub and Jira webhooks into the store: signatures, parsing, idempotence, races."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import random
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text, update

from adaptune.config import load_settings
from adaptune.dataset.solutions import pr_fixes
from adaptune.errors import StoreError
from adaptune.ingest.webhooks import WebhookResult, verify_github_signature, verify_jira_signature
from adaptune.ingest.webhooks_github import handle_github
from adaptune.ingest.webhooks_jira import handle_jira
from adaptune.store import Store, open_store, schema
from adaptune.store.issues import select_comments, select_issues
from adaptune.types import Issue

FIXTURES = Path(__file__).parent / "fixtures" / "webhooks"
SECRET = "whsec-4f1c9e0b7a2d"
REPO = "octo-org/widgets"


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def sign(raw: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def body_of(payload: dict[str, Any] | bytes) -> bytes:
    return payload if isinstance(payload, bytes) else json.dumps(payload).encode()


def github(
    store: Store,
    event: str,
    payload: dict[str, Any] | bytes,
    delivery: str = "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    secret: str | None = SECRET,
    new_domains: bool = True,
    **headers: str,
) -> WebhookResult:
    raw = body_of(payload)
    sent = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-GitHub-Hook-ID": "467198212",
        "X-Hub-Signature-256": sign(raw),
        "Content-Type": "application/json",
        **{k.replace("_", "-"): v for k, v in headers.items()},
    }
    sent = {k: v for k, v in sent.items() if v}
    return handle_github(store, sent, raw, secret, new_domains=new_domains)


def jira(
    store: Store,
    payload: dict[str, Any] | bytes,
    ident: str | None = "a1b2c3d4-0001",
    secret: str | None = SECRET,
    signature: str | None = None,
    new_domains: bool = True,
) -> WebhookResult:
    raw = body_of(payload)
    headers = {"X-Hub-Signature": signature or sign(raw), "X-Atlassian-Webhook-Flow": "Primary"}
    if ident:
        headers["X-Atlassian-Webhook-Identifier"] = ident
    return handle_jira(store, headers, raw, secret, new_domains=new_domains)


def counts(store: Store) -> tuple[int, int, int]:
    with store.begin() as conn:
        return tuple(  # type: ignore[return-value]
            conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (schema.issues, schema.comments, schema.webhook_deliveries)
        )


def issue(store: Store, number: int, repo: str = REPO, source: str = "github") -> Issue:
    with store.begin() as conn:
        found = [i for i in select_issues(conn, [(source, repo)]) if i.number == number]
    assert len(found) == 1, found
    return found[0]


def edited(payload: dict[str, Any], title: str, updated_at: str) -> dict[str, Any]:
    out = copy.deepcopy(payload)
    out["action"] = "edited"
    out["issue"].update(title=title, updated_at=updated_at)
    return out


# --- signatures ----------------------------------------------------------------------------------


def test_signature_checks_use_the_raw_bytes() -> None:
    raw = b'{"a": 1}'
    assert verify_github_signature(SECRET, raw, sign(raw))
    assert verify_github_signature(SECRET, raw, sign(raw).upper().replace("SHA256=", "sha256="))
    assert verify_jira_signature(SECRET, raw, sign(raw))
    for header in (None, "", sign(raw, "other"), sign(b'{"a":1}'), "sha1=abc", sign(raw)[7:]):
        assert not verify_github_signature(SECRET, raw, header)
        assert not verify_jira_signature(SECRET, raw, header)
    assert not verify_github_signature("", raw, sign(raw, ""))
    assert not verify_github_signature(SECRET, raw, "sha256=é")


@pytest.mark.parametrize(
    "headers",
    [
        {"X_Hub_Signature_256": ""},
        {"X_Hub_Signature_256": sign(b"{}")},
        {"X_Hub_Signature_256": sign(body_of(load("github_issues_opened")), "guess")},
    ],
    ids=["missing", "other-body", "other-secret"],
)
def test_bad_github_signature_is_401_and_stores_nothing(store: Store, headers: dict) -> None:
    result = github(store, "issues", load("github_issues_opened"), **headers)
    assert result.status == 401 and result.issues == ()
    assert "ADAPTUNE_GITHUB_WEBHOOK_SECRET" in result.body["detail"]
    assert SECRET not in json.dumps(result.body)
    assert counts(store) == (0, 0, 0)


def test_bad_jira_signature_is_401_and_stores_nothing(store: Store) -> None:
    payload = load("jira_issue_created")
    for signature in ("sha256=" + "0" * 64, sign(body_of(payload), "guess")):
        result = jira(store, payload, signature=signature)
        assert result.status == 401 and signature not in json.dumps(result.body)
    assert counts(store) == (0, 0, 0)


@pytest.mark.parametrize("secret", [None, ""])
def test_no_secret_configured_is_503(store: Store, secret: str | None) -> None:
    gh = github(store, "issues", load("github_issues_opened"), secret=secret)
    assert gh.status == 503 and "ADAPTUNE_GITHUB_WEBHOOK_SECRET" in gh.body["detail"]
    jr = jira(store, load("jira_issue_created"), secret=secret)
    assert jr.status == 503 and "ADAPTUNE_JIRA_WEBHOOK_SECRET" in jr.body["detail"]
    assert counts(store) == (0, 0, 0)


# --- GitHub events -------------------------------------------------------------------------------


def test_signed_issue_is_stored_with_its_fields(store: Store) -> None:
    result = github(store, "issues", load("github_issues_opened"))
    assert result.status == 200
    assert result.body["status"] == "stored" and result.body["event"] == "issues.opened"
    assert result.body["domain"] == "widgets"
    assert result.body["issues"] == [{"source": "github", "repo": REPO, "number": 42}]
    assert result.issues == (("github", REPO, 42),)
    got = issue(store, 42)
    assert got.title == "Crash when loading a config with an empty list"
    assert (got.state, got.labels, got.author, got.is_pull_request) == (
        "open",
        ("bug",),
        "mona",
        False,
    )
    assert "IndexError: list index out of range" in (got.body or "")
    assert got.url == f"https://github.com/{REPO}/issues/42"
    t = schema.webhook_deliveries
    with store.begin() as conn:
        row = conn.execute(select(t)).one()
    assert (row.source, row.delivery_key, row.event) == (
        "github",
        "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "issues.opened",
    )
    assert json.loads(row.outcome)["status"] == "stored"


def test_header_names_are_case_insensitive(store: Store) -> None:
    raw = body_of(load("github_issues_opened"))
    headers = {
        "x-github-event": "issues",
        "X-GITHUB-DELIVERY": "d-1",
        "x-github-hook-id": "1",
        "X-HUB-SIGNATURE-256": sign(raw),
    }
    assert handle_github(store, headers, raw, SECRET, new_domains=True).body["status"] == "stored"


def test_comment_event_stores_the_comment_and_the_issue(store: Store) -> None:
    result = github(store, "issue_comment", load("github_issue_comment_created"))
    assert result.status == 200 and result.body["comments"] == 1
    assert result.issues == (("github", REPO, 42),)
    assert issue(store, 42).comments_count == 1
    with store.begin() as conn:
        (comment,) = select_comments(conn, "github", REPO, 42)
    assert comment.comment_id == "1979211234" and comment.author_association == "MEMBER"
    assert comment.body and comment.body.startswith("Thanks for the report.")


def test_merged_pr_is_stored_and_linked_as_the_fix(store: Store) -> None:
    github(store, "issues", load("github_issues_opened"), delivery="d-1")
    result = github(store, "pull_request", load("github_pull_request_closed"), delivery="d-2")
    assert result.status == 200 and result.body["event"] == "pull_request.closed"
    pr = issue(store, 43)
    assert pr.is_pull_request and pr.state == "closed"
    assert pr.merged_at is not None and pr.merged_at.isoformat() == "2024-03-06T09:30:44+00:00"
    with store.begin() as conn:
        fixes = pr_fixes(select_issues(conn))
    assert [p.number for p in fixes[("github", REPO, 42)]] == [43]


def test_redelivery_is_a_duplicate_that_changes_nothing(store: Store) -> None:
    payload = load("github_issues_opened")
    first = github(store, "issues", payload)
    again = github(store, "issues", payload)
    assert first.body["status"] == "stored"
    assert (again.status, again.body["status"], again.issues) == (200, "duplicate", ())
    assert counts(store) == (1, 0, 1)
    # The hook id is not signed: the same delivery id with another one is still a re-delivery.
    other = github(store, "issues", payload, X_GitHub_Hook_ID="999")
    assert other.body["status"] == "duplicate" and counts(store) == (1, 0, 1)


def test_edited_before_opened_keeps_the_newest_state(store: Store) -> None:
    opened = load("github_issues_opened")
    newer = edited(opened, "Empty plugins list crashes the loader", "2024-03-05T11:00:00Z")
    assert github(store, "issues", newer, delivery="d-2").issues == (("github", REPO, 42),)
    late = github(store, "issues", opened, delivery="d-1")
    assert late.body["status"] == "stored" and late.issues == () and late.body["changed"] == 0
    assert issue(store, 42).title == "Empty plugins list crashes the loader"
    assert counts(store) == (1, 0, 2)


def test_ping_and_other_events_store_nothing(store: Store) -> None:
    pong = github(store, "ping", load("github_ping"))
    assert (pong.status, pong.body["status"]) == (200, "pong")
    push = github(store, "push", {"ref": "refs/heads/main"})
    assert (push.status, push.body["status"]) == (202, "ignored")
    assert counts(store) == (0, 0, 0)


def test_deleted_issue_is_recorded_and_the_row_kept(store: Store) -> None:
    github(store, "issues", load("github_issues_opened"), delivery="d-1")
    deleted = load("github_issues_opened") | {"action": "deleted"}
    result = github(store, "issues", deleted, delivery="d-2")
    assert (result.status, result.body["status"], result.issues) == (200, "ignored", ())
    assert counts(store) == (1, 0, 2)
    assert github(store, "issues", deleted, delivery="d-2").body["status"] == "duplicate"


def _without(payload: dict[str, Any], *path: str) -> dict[str, Any]:
    out = copy.deepcopy(payload)
    node = out
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    return out


OPENED = load("github_issues_opened")
COMMENTED = load("github_issue_comment_created")


@pytest.mark.parametrize(
    ("event", "body", "status", "named"),
    [
        ("issues", b'{"action": "opened", ', 422, "not JSON"),
        ("issues", b"\xff\xfe{}", 422, "UTF-8"),
        ("issues", b"[1, 2]", 422, "list"),
        ("issues", b"", 422, "empty"),
        ("issues", _without(OPENED, "issue", "number"), 422, "number"),
        ("issues", _without(OPENED, "issue", "created_at"), 422, "created_at"),
        ("issues", _without(OPENED, "issue"), 422, "issue is missing"),
        ("issues", _without(OPENED, "repository"), 422, "repository.full_name"),
        ("issues", _without(OPENED, "action"), 422, "action"),
        ("issue_comment", _without(COMMENTED, "comment"), 422, "comment is missing"),
        ("issue_comment", _without(COMMENTED, "comment", "id"), 422, "id"),
        ("pull_request", _without(OPENED, "issue"), 422, "pull_request is missing"),
    ],
    ids=[
        *("json", "utf8", "list", "empty", "number", "created", "issue", "repo", "action"),
        *("comment", "comment-id", "pr"),
    ],
)
def test_malformed_payloads_are_refused_naming_the_problem(
    store: Store, event: str, body: Any, status: int, named: str
) -> None:
    result = github(store, event, body)
    assert result.status == status and named in result.body["detail"]
    assert counts(store) == (0, 0, 0)


def test_missing_delivery_header_is_400(store: Store) -> None:
    result = github(store, "issues", load("github_issues_opened"), X_GitHub_Delivery="")
    assert result.status == 400 and "X-GitHub-Delivery" in result.body["detail"]
    assert counts(store) == (0, 0, 0)


def test_a_failing_upsert_leaves_no_delivery_behind(store: Store) -> None:
    with store.begin() as conn:  # a database that refuses comments, as a crash mid-way would
        conn.execute(
            text(
                "CREATE TRIGGER no_comments BEFORE INSERT ON comments "
                "BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        )
    with pytest.raises(StoreError, match="webhook failed"):
        github(store, "issue_comment", load("github_issue_comment_created"))
    assert counts(store) == (0, 0, 0)


# --- Jira ----------------------------------------------------------------------------------------


def test_jira_created_updated_and_comment_events(store: Store) -> None:
    created = jira(store, load("jira_issue_created"), ident="id-1")
    assert created.status == 200 and created.body["domain"] == "wid"
    assert created.issues == (("jira", "WID", 7),)
    got = issue(store, 7, "WID", "jira")
    assert (got.key, got.title, got.state, got.issue_type) == (
        "WID-7",
        "Loader crashes on an empty plugins list",
        "open",
        "Bug",
    )
    assert got.labels == ("config", "loader")
    assert got.url == "https://widgets.atlassian.net/browse/WID-7"

    comment = jira(store, load("jira_comment_created"), ident="id-2")
    assert comment.body["comments"] == 1 and comment.issues == ()
    assert issue(store, 7, "WID", "jira").state == "open"  # the reduced issue changes nothing

    updated = jira(store, load("jira_issue_updated"), ident="id-3")
    assert updated.issues == (("jira", "WID", 7),) and updated.body["comments"] == 0
    got = issue(store, 7, "WID", "jira")
    assert (got.state, got.state_reason) == ("closed", "Done")
    with store.begin() as conn:
        (stored,) = select_comments(conn, "jira", "WID", 7)
    assert stored.author == "Grace Hopper" and "Fixed in 2.3.2" in (stored.body or "")
    assert counts(store) == (1, 1, 3)


def test_jira_redelivery_is_recognised_with_or_without_identifier(store: Store) -> None:
    payload = load("jira_issue_created")
    assert jira(store, payload, ident="id-1").body["status"] == "stored"
    assert jira(store, payload, ident="id-1").body["status"] == "duplicate"
    # Without the identifier header the body's digest is the key.
    assert jira(store, payload, ident=None).body["status"] == "stored"
    assert jira(store, payload, ident=None).body["status"] == "duplicate"
    assert jira(store, payload | {"timestamp": 1}, ident=None).body["status"] == "stored"
    assert counts(store) == (1, 0, 3)


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        (_without(load("jira_issue_created"), "webhookEvent"), "webhookEvent"),
        (_without(load("jira_issue_created"), "issue", "key"), "key"),
        (_without(load("jira_issue_created"), "issue", "fields", "created"), "created"),
        (_without(load("jira_comment_created"), "comment"), "comment"),
        (_without(load("jira_comment_created"), "comment", "created"), "created"),
    ],
    ids=["event", "key", "created", "comment", "comment-created"],
)
def test_jira_malformed_payloads_are_422(store: Store, payload: dict, named: str) -> None:
    result = jira(store, payload)
    assert result.status == 422 and named in result.body["detail"]
    assert counts(store) == (0, 0, 0)


def test_jira_other_and_deleted_events(store: Store) -> None:
    other = jira(store, {"webhookEvent": "sprint_started", "sprint": {"id": 1}}, ident="i-1")
    assert (other.status, other.body["status"]) == (202, "ignored")
    deleted = load("jira_issue_created") | {"webhookEvent": "jira:issue_deleted"}
    result = jira(store, deleted, ident="i-2")
    assert (result.status, result.body["status"]) == (200, "ignored")
    assert counts(store) == (0, 0, 1)


# --- races ---------------------------------------------------------------------------------------


def _race(store: Store) -> None:
    """8 threads deliver overlapping events, each delivery twice, in a shuffled order."""
    base = load("github_issues_opened")
    calls = []
    for n in range(1, 5):
        opened = copy.deepcopy(base)
        opened["issue"].update(number=n, html_url=f"https://github.com/{REPO}/issues/{n}")
        for v in range(3):
            payload = edited(opened, f"issue {n} v{v}", f"2024-03-05T1{v}:00:00Z") if v else opened
            calls += [("issues", payload, f"d-{n}-{v}")] * 2
        comment = load("github_issue_comment_created")
        comment["issue"] = copy.deepcopy(opened["issue"])
        comment["comment"]["id"] = 1000 + n
        calls += [("issue_comment", comment, f"c-{n}")] * 2
    random.Random(7).shuffle(calls)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda c: github(store, c[0], c[1], delivery=c[2]), calls))
    statuses = sorted(r.body["status"] for r in results)
    assert statuses == ["duplicate"] * 16 + ["stored"] * 16
    assert counts(store) == (4, 4, 16)
    for n in range(1, 5):
        assert issue(store, n).title == f"issue {n} v2"


def test_concurrent_overlapping_deliveries_store_once_and_newest(store: Store) -> None:
    _race(store)


@pytest.fixture
def pg_store(workspace: Path) -> Iterator[Store]:
    from pg_cluster import cluster, fresh_database, unavailable_reason

    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with cluster() as admin:
        url = fresh_database(admin, f"t_{uuid.uuid4().hex[:12]}")
        store = open_store(load_settings(database_url=url))
        yield store
        store.close()


def _older_waits_for_newer(store: Store) -> None:
    """An older delivery that reads while a newer write is uncommitted must not overwrite it."""
    t = schema.issues
    with store.engine.connect() as conn, conn.begin():
        conn.execute(
            update(t)
            .where(t.c.number == 1)
            .values(title="newest", updated_at=datetime(2024, 3, 6, tzinfo=UTC))
        )
        older = edited(load("github_issues_opened"), "older", "2024-03-05T23:00:00Z")
        older["issue"]["number"] = 1
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(github, store, "issues", older, delivery="late")
            time.sleep(0.5)  # let it reach the locked row; the outcome must not depend on this
            conn.commit()
            assert pending.result().body["status"] == "stored"
    assert issue(store, 1).title == "newest"


@pytest.mark.e2e
def test_webhooks_on_postgres(pg_store: Store) -> None:
    _race(pg_store)
    _older_waits_for_newer(pg_store)
    # A value the column refuses fails the whole delivery: no delivery row without its issue.
    payload = load("github_issues_opened")
    payload["issue"].update(number=99, user={"login": "x" * 250})
    result = github(pg_store, "issues", payload, delivery="too-long")
    assert result.status == 422 and counts(pg_store) == (4, 4, 17)
