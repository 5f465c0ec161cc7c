"""Webhooks against an outside probe (issue #19): repositories no domain holds, names that are
not repositories, numbers no column holds, re-deliveries under another hook id, bodies that are
not payloads. Each answer is a 4xx naming the problem, stores nothing and leaves the service in
rotation; through the handlers and through the real app."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from adaptune.config import load_settings
from adaptune.ingest import ingest
from adaptune.ingest.files import file_source
from adaptune.serve import create_app, serve_settings
from adaptune.store import Store, open_store, schema
from adaptune.store.db import MIGRATIONS, create_db_engine
from adaptune.store.domains import add_domain, list_domains
from serve_fixtures import AUTH, SECRET, TOKEN, seed_store, signed
from test_webhooks import counts, github, jira, load, sign

OPENED = load("github_issues_opened")
COMMENTED = load("github_issue_comment_created")
PR_CLOSED = load("github_pull_request_closed")
JIRA_CREATED = load("jira_issue_created")
JIRA_COMMENTED = load("jira_comment_created")


# --- through the app: unknown repositories, readiness ----------------------------------------


def _app(store: Store, **settings: Any) -> Any:
    settings = {
        "api_token": TOKEN,
        "warm": False,
        "generator": "none",
        "github_webhook_secret": SECRET,
        "jira_webhook_secret": SECRET,
        **settings,
    }
    return create_app(store, serve_settings(**settings))


def _opened(repo: str, number: int = 901) -> dict[str, Any]:
    issue = {
        "number": number,
        "title": "Streaming mode hangs on parquet shards",
        "body": "iter over IterableDataset never returns",
        "state": "open",
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z",
        "html_url": f"https://github.com/{repo}/issues/{number}",
    }
    return {"action": "opened", "issue": issue, "repository": {"full_name": repo}}


def _post_github(c: TestClient, payload: dict[str, Any], delivery: str) -> Any:
    raw, sig = signed(payload)
    headers = {
        "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sig,
        "Content-Type": "application/json",
    }
    return c.post("/webhooks/github", content=raw, headers=headers)


def _post_jira(c: TestClient, payload: dict[str, Any], ident: str) -> Any:
    raw, sig = signed(payload)
    headers = {
        "X-Hub-Signature": sig,
        "X-Atlassian-Webhook-Identifier": ident,
        "Content-Type": "application/json",
    }
    return c.post("/webhooks/jira", content=raw, headers=headers)


def _stored(store: Store) -> tuple[int, int, list[str]]:
    """Issues, deliveries, domain names."""
    with store.begin() as conn:
        issues = conn.execute(select(func.count()).select_from(schema.issues)).scalar_one()
        deliveries = conn.execute(
            select(func.count()).select_from(schema.webhook_deliveries)
        ).scalar_one()
        return issues, deliveries, [d.name for d in list_domains(conn)]


@pytest.fixture
def seeded(store: Store, tmp_path) -> Store:
    seed_store(store, tmp_path)  # domain r, repo o/r
    return store


TICKET = {"title": "KeyError when loading a dataset", "generate": False}


def test_a_repo_no_domain_holds_is_refused_and_the_service_stays_ready(seeded: Store) -> None:
    app = _app(seeded)
    with TestClient(app) as c:
        app.state.service.warm()
        assert c.get("/readyz").status_code == 200
        before = _stored(seeded)
        bad = _post_github(c, _opened("../../etc/passwd"), "probe-1")
        assert bad.status_code == 422, bad.text
        assert "repository.full_name" in bad.json()["detail"]
        new = _post_github(c, _opened("octo-org/brand-new"), "probe-2")
        assert new.status_code == 422, new.text
        detail = new.json()["detail"]
        assert "adaptune domains add brand-new --source github:octo-org/brand-new" in detail
        assert "ADAPTUNE_WEBHOOK_NEW_DOMAINS=true" in detail
        project = copy.deepcopy(JIRA_CREATED)
        project["issue"]["key"] = "NEWP-1"
        project["issue"]["fields"]["project"]["key"] = "NEWP"
        jr = _post_jira(c, project, "probe-3")
        assert jr.status_code == 422 and "jira:NEWP" in jr.json()["detail"]
        assert _stored(seeded) == before, "nothing stored, not even the delivery"
        assert c.get("/readyz").status_code == 200
        assert c.post("/v1/tickets", json=TICKET, headers=AUTH).status_code == 200

        # The admin adds the repository while the service runs; the tracker delivers again.
        with seeded.begin() as conn:
            add_domain(conn, "brand-new", ["github:octo-org/brand-new"])
        again = _post_github(c, _opened("octo-org/brand-new"), "probe-2")
        assert again.status_code == 200 and again.json()["status"] == "stored", again.text
        ready = c.get("/readyz")
        assert ready.status_code == 200, "a domain added after start-up does not count yet"
        assert ready.json()["building"] == ["brand-new"]


@pytest.mark.parametrize(
    "repo",
    ["../../etc/passwd", "o/..", "./r", "o/r/x", "o r/x", "ö/x", "o/", "/r", "x" * 101 + "/y"],
)
def test_names_that_are_not_repositories_are_refused_even_with_new_domains(
    store: Store, repo: str
) -> None:
    payload = copy.deepcopy(OPENED)
    payload["repository"]["full_name"] = repo
    result = github(store, "issues", payload, new_domains=True)
    assert result.status == 422 and "repository.full_name" in result.body["detail"]
    assert counts(store) == (0, 0, 0)
    with store.begin() as conn:
        assert list_domains(conn) == []


@pytest.mark.parametrize("key", ["../x", "wid", "W ID", "W-1", "W" * 101])
def test_jira_project_keys_are_checked(store: Store, key: str) -> None:
    payload = copy.deepcopy(JIRA_CREATED)
    payload["issue"]["fields"]["project"]["key"] = key
    result = jira(store, payload)
    assert result.status == 422 and "issue.fields.project.key" in result.body["detail"]
    assert counts(store) == (0, 0, 0)


def test_with_new_domains_the_domain_is_built_in_the_background_and_readyz_stays_200(
    seeded: Store,
) -> None:
    app = _app(seeded, warm=True, webhook_new_domains=True)
    statuses: list[int] = []
    with TestClient(app) as c:
        deadline = time.monotonic() + 120
        while c.get("/readyz").status_code != 200:  # warm-up (a thread of the lifespan)
            assert time.monotonic() < deadline, "warm-up never finished"
            time.sleep(0.05)
        refused = _post_github(c, _opened("o/../../etc"), "new-0")
        assert refused.status_code == 422
        r = _post_github(c, _opened("octo-org/brand-new", 7), "new-1")
        assert r.status_code == 200 and r.json()["domain"] == "brand-new", r.text
        while True:
            ready = c.get("/readyz")
            statuses.append(ready.status_code)
            if ready.json()["indexes"].get("brand-new"):
                break
            assert time.monotonic() < deadline, ready.json()
            time.sleep(0.02)
        assert set(statuses) == {200}, statuses
        ticket = {
            **TICKET,
            "title": "Streaming mode hangs on parquet shards",
            "domain": "brand-new",
        }
        found = c.post("/v1/tickets", json=ticket, headers=AUTH).json()
        assert [s["number"] for s in found["similar"]][:1] == [7]
    assert _stored(seeded)[2] == ["brand-new", "r"]


# --- numbers no column holds ---------------------------------------------------------------------

BAD_NUMBERS = [
    "1180591620717411303424",  # 2**70, the probe's
    str(2**63),
    "-1",
    "1e308",
    "NaN",
    "-Infinity",
    "true",
    "9" * 5000,  # more digits than int() converts
]


def _with_token(payload: dict[str, Any], path: tuple[str, ...], token: str) -> bytes:
    """``payload`` as JSON with the raw ``token`` at ``path`` (NaN, 1e308, huge integers)."""
    out = copy.deepcopy(payload)
    node = out
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = "@@TOKEN@@"
    return json.dumps(out).replace('"@@TOKEN@@"', token).encode()


@pytest.mark.parametrize("token", BAD_NUMBERS, ids=lambda t: t[:12])
@pytest.mark.parametrize(
    ("tracker", "event", "payload", "path"),
    [
        ("github", "issues", OPENED, ("issue", "number")),
        ("github", "issues", OPENED, ("issue", "comments")),
        ("github", "issue_comment", COMMENTED, ("issue", "number")),
        ("github", "issue_comment", COMMENTED, ("comment", "id")),
        ("github", "pull_request", PR_CLOSED, ("pull_request", "number")),
        ("jira", None, JIRA_CREATED, ("issue", "fields", "comment", "total")),
        ("jira", None, JIRA_COMMENTED, ("comment", "id")),
    ],
    ids=[
        "gh-issue",
        "gh-comments",
        "gh-comment-issue",
        "gh-comment-id",
        "gh-pr",
        "jira-issue",
        "jira-comment",
    ],
)
def test_numbers_no_column_holds_are_422_naming_the_field(
    store: Store, tracker: str, event: str | None, payload: dict, path: tuple, token: str
) -> None:
    raw = _with_token(payload, path, token)
    result = github(store, event, raw) if tracker == "github" else jira(store, raw)
    named = ".".join(path)
    assert result.status == 422, result.body
    assert result.body["detail"].startswith(f"{named}: "), result.body
    assert counts(store) == (0, 0, 0)


@pytest.mark.parametrize(
    ("key", "named"), [("WID-1180591620717411303424", "issue.key"), ("WID-0", "issue.key")]
)
def test_jira_issue_numbers_come_from_the_key_and_are_checked(
    store: Store, key: str, named: str
) -> None:
    for payload in (JIRA_CREATED, JIRA_COMMENTED):
        bad = copy.deepcopy(payload)
        bad["issue"]["key"] = key
        result = jira(store, bad)
        assert result.status == 422 and result.body["detail"].startswith(f"{named}: ")
    assert counts(store) == (0, 0, 0)


def test_a_zero_issue_number_and_a_stray_nan_are_refused(store: Store) -> None:
    zero = github(store, "issues", _with_token(OPENED, ("issue", "number"), "0"))
    assert zero.status == 422 and zero.body["detail"].startswith("issue.number: ")
    stray = github(store, "issues", _with_token(OPENED, ("issue", "reactions"), "NaN"))
    assert stray.status == 422 and stray.body["detail"].startswith("issue.reactions: ")
    assert counts(store) == (0, 0, 0)


def test_file_rows_with_numbers_no_column_holds_are_rejected_with_a_reason(
    store: Store, tmp_path
) -> None:
    def row(number: str, **extra: str) -> str:
        obj = {
            "number": "@@N@@",
            "title": "t",
            "state": "open",
            "created_at": "2024-01-01T00:00:00Z",
            "html_url": "https://github.com/o/r/issues/1",
        }
        text = json.dumps(obj).replace('"@@N@@"', number)
        for name, token in extra.items():
            text = text[:-1] + f', "{name}": {token}}}'
        return text

    lines = [row(t) for t in BAD_NUMBERS] + [row("1", comments="1e999"), row("2")]
    lines.append(row("3").replace("2024-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00"))
    path = tmp_path / "issues.jsonl"
    path.write_text("\n".join(lines) + "\n")
    report = ingest(file_source(path), store)
    assert report.inserted == 1
    reasons = [r.reason for r in report.rejected]
    assert len(reasons) == len(BAD_NUMBERS) + 2, reasons
    assert all("'number'" in r for r in reasons[: len(BAD_NUMBERS)]), reasons
    assert "'comments'" in reasons[-2] and "'created_at'" in reasons[-1]
    array = tmp_path / "issues.json"
    array.write_text("[" + ",".join([row("1e308"), row("NaN"), row("4")]) + "]")
    report = ingest(file_source(array), store)
    assert report.inserted == 1 and len(report.rejected) == 2


# --- re-deliveries ---------------------------------------------------------------------------


def test_a_redelivery_under_another_hook_id_is_a_duplicate(store: Store) -> None:
    assert github(store, "issues", OPENED, X_GitHub_Hook_ID="1").body["status"] == "stored"
    for hook in ("2", ""):
        again = github(store, "issues", OPENED, X_GitHub_Hook_ID=hook)
        assert (again.status, again.body["status"]) == (200, "duplicate")
    assert counts(store) == (1, 0, 1)


@pytest.fixture
def store_at_0003(workspace) -> Iterator[str]:
    """A database migrated to revision 0003 (GitHub keys were ``<hook id>:<delivery id>``)."""
    url = load_settings().database_url
    engine = create_db_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
    yield url
    engine.dispose()


def test_a_delivery_stored_before_migration_0004_is_still_a_duplicate(store_at_0003: str) -> None:
    engine = create_db_engine(store_at_0003)
    t = schema.webhook_deliveries
    old = "72d3162e-cc78-11e3-81ab-4c9367dc0958"  # the helper's default delivery id
    now = datetime.now(UTC)
    with engine.begin() as conn:
        for key in (f"467198212:{old}", f"555:{old}", "-:other-delivery"):
            conn.execute(
                t.insert().values(
                    source="github",
                    delivery_key=key,
                    event="issues.opened",
                    outcome="{}",
                    received_at=now,
                )
            )
    engine.dispose()
    store = open_store()  # migrates to the newest revision
    try:
        with store.begin() as conn:
            keys = sorted(conn.execute(select(t.c.delivery_key)).scalars())
        assert keys == [old, "other-delivery"]
        again = github(store, "issues", OPENED, X_GitHub_Hook_ID="999")
        assert (again.status, again.body["status"]) == (200, "duplicate")
        other = github(store, "issues", OPENED, delivery="other-delivery")
        assert other.body["status"] == "duplicate"
        assert counts(store) == (0, 0, 2)
    finally:
        store.close()


# --- bodies and headers ----------------------------------------------------------------------


def test_body_problems_are_422_header_problems_400_and_the_schema_lists_both(
    seeded: Store,
) -> None:
    app = _app(seeded)
    raw = json.dumps(_opened("o/r")).encode()
    with TestClient(app) as c:

        def post(body: bytes, **headers: str) -> Any:
            sent = {
                "X-GitHub-Event": "issues",
                "X-GitHub-Delivery": "b-1",
                "X-Hub-Signature-256": sign(body, SECRET),
                **headers,
            }
            kept = {k: v for k, v in sent.items() if v}
            return c.post("/webhooks/github", content=body, headers=kept)

        before = _stored(seeded)
        for body in (b"{", b'{"x": "\xff"}', b"[1]", b"   ", b"[" * 30_000 + b"]" * 30_000):
            r = post(body)
            assert r.status_code == 422 and r.json()["detail"], (body[:20], r.text)
        assert post(raw, **{"X-GitHub-Event": ""}).status_code == 400
        assert post(raw, **{"X-GitHub-Delivery": ""}).status_code == 400
        assert post(raw, **{"X-GitHub-Delivery": "d" * 301}).status_code == 400
        assert _stored(seeded) == before
        paths = c.get("/openapi.json").json()["paths"]
    for route in ("/webhooks/github", "/webhooks/jira"):
        assert {"400", "401", "422", "503"} <= set(paths[route]["post"]["responses"]), route
