"""The GitHub REST source against a fake GitHub served by a real local HTTP server.

The fake answers like the issues API: ``state``/``since`` filters, ``sort=updated`` ascending,
``Link`` pagination (with a small server-side page size), weak ETags and 304s, comments per
issue. Faults (rate limits, 5xx, truncated bodies) are injected per request; nothing is patched.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from adaptune.config import load_settings
from adaptune.errors import ConfigError, RemoteError
from adaptune.ingest.github import GitHubSource
from adaptune.ingest.http import RetryPolicy
from adaptune.store import Store, open_store, schema
from adaptune.store.issues import select_comments, select_issues
from adaptune.store.rows import row_to_comment
from adaptune.store.sync import SyncState, load_sync_state
from adaptune.types import Comment, IngestReport, Issue
from conftest import shared_file
from local_server import LocalServer, Reply, Request

REPO = "acme/widgets"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
TOKEN = "ghp_Zq7TESTtoken0123456789abcdefXYZ"
FAST = RetryPolicy(retries=2, backoff=0.01, max_backoff=0.05, timeout=5.0)


def ts(hours: float) -> str:
    """GitHub's timestamp ``hours`` after T0."""
    return (T0 + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def issue_obj(
    number: int, hours: float, state: str = "closed", pr: bool = False, comments: int = 0
) -> dict[str, Any]:
    """A REST issue (or PR) object of the shape GitHub returns, last updated at ``hours``."""
    kind = "pull" if pr else "issues"
    obj: dict[str, Any] = {
        "url": f"https://api.github.com/repos/{REPO}/issues/{number}",
        "repository_url": f"https://api.github.com/repos/{REPO}",
        "html_url": f"https://github.com/{REPO}/{kind}/{number}",
        "id": 9000 + number,
        "number": number,
        "title": f"Widget {number} breaks",
        "body": f"Steps to reproduce #{number}",
        "user": {"login": f"user{number % 3}"},
        "labels": [{"name": "bug"}],
        "state": state,
        "state_reason": "completed" if state == "closed" else None,
        "comments": comments,
        "author_association": "CONTRIBUTOR",
        "created_at": ts(0),
        "updated_at": ts(hours),
        "closed_at": ts(hours) if state == "closed" else None,
    }
    if pr:
        obj["pull_request"] = {"url": obj["url"], "merged_at": ts(hours)}
    return obj


def comment_obj(cid: int, hours: float) -> dict[str, Any]:
    """A REST comment object."""
    return {
        "id": cid,
        "user": {"login": "maintainer"},
        "author_association": "MEMBER",
        "body": f"Comment {cid}: try upgrading",
        "created_at": ts(hours),
        "updated_at": ts(hours),
    }


def standard_rows() -> list[dict[str, Any]]:
    """13 rows updated an hour apart: odd numbers closed, 4, 8 and 12 pull requests."""
    return [
        issue_obj(n, n, state="closed" if n % 2 else "open", pr=n % 4 == 0, comments=n % 3)
        for n in range(1, 14)
    ]


def standard_comments() -> dict[int, list[dict[str, Any]]]:
    """Comments for every row that says it has some (``n % 3`` of them)."""
    return {n: [comment_obj(100 * n + k, n) for k in range(n % 3)] for n in range(1, 14)}


def _key(row: Any) -> tuple[str, int]:
    if not isinstance(row, dict):
        return ("", 0)
    return (str(row.get("updated_at")), int(row.get("number") or 0))


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass
class Fault:
    """An answer given instead of the real one to requests that match ``when``."""

    when: Callable[[Request], bool]
    reply: Reply
    times: int | None = 1
    """How many requests it answers; ``None`` for every one."""


@dataclass
class FakeGitHub:
    """A handler for LocalServer that behaves like the GitHub issues API."""

    rows: list[Any] = field(default_factory=list)
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    page_size: int = 5
    prefix: str = ""
    faults: list[Fault] = field(default_factory=list)
    url: str = ""
    server: LocalServer | None = None

    @property
    def requests(self) -> list[Request]:
        assert self.server is not None
        return self.server.requests

    def issue_requests(self) -> list[Request]:
        return [r for r in self.requests if is_issues(r)]

    def comment_paths(self) -> list[str]:
        out = []
        for r in self.requests:
            if r.path.endswith("/comments"):
                out.append(r.path + (f"?page={r.query['page']}" if "page" in r.query else ""))
        return out

    def put(self, obj: dict[str, Any]) -> None:
        """Add a row, or replace the one with the same number (an edit on GitHub)."""
        self.rows = [r for r in self.rows if _key(r)[1] != obj["number"]] + [obj]

    def fail(self, when: Callable[[Request], bool], reply: Reply, times: int | None = 1) -> None:
        self.faults.append(Fault(when, reply, times))

    def __call__(self, req: Request) -> Reply:
        for fault in self.faults:
            if fault.when(req) and fault.times != 0:
                if fault.times is not None:
                    fault.times -= 1
                return fault.reply
        path = req.path.removeprefix(self.prefix)
        if path == f"/repos/{REPO}/issues":
            return self._page(req, self._issues(req.query))
        if m := re.fullmatch(rf"/repos/{REPO}/issues/(\d+)/comments", path):
            return self._page(req, self.comments.get(int(m[1]), []))
        return Reply(404, {"message": "Not Found"})

    def _issues(self, query: dict[str, str]) -> list[Any]:
        rows = self.rows
        if query.get("state", "open") != "all":
            rows = [r for r in rows if not isinstance(r, dict) or r["state"] == query["state"]]
        if "since" in query:
            since = _parse(query["since"])
            rows = [r for r in rows if not isinstance(r, dict) or _parse(r["updated_at"]) >= since]
        return sorted(rows, key=_key)

    def _page(self, req: Request, rows: list[Any]) -> Reply:
        page = int(req.query.get("page", "1"))
        size = min(int(req.query.get("per_page", "30")), self.page_size)
        headers = {}
        if page * size < len(rows):
            query = urlencode({**req.query, "page": str(page + 1)})
            headers["Link"] = f'<{self.url}{req.path}?{query}>; rel="next"'
        body = json.dumps(rows[(page - 1) * size : page * size])
        headers["ETag"] = f'W/"{hashlib.sha256(body.encode()).hexdigest()[:32]}"'
        if req.headers.get("if-none-match") == headers["ETag"]:
            return Reply(304, b"", headers)
        return Reply(200, body, headers)


def is_issues(req: Request) -> bool:
    return req.path.endswith(f"/repos/{REPO}/issues")


def on_page(n: int) -> Callable[[Request], bool]:
    return lambda req: is_issues(req) and req.query.get("page", "1") == str(n)


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub()
    with LocalServer(fake) as server:
        fake.url, fake.server = server.url, server
        yield fake


def sync(
    fake: FakeGitHub, store: Store, messages: list[str] | None = None, **kwargs: Any
) -> IngestReport:
    """One ingest of REPO from ``fake`` with a fast retry policy."""
    messages = messages if messages is not None else []
    kwargs.setdefault("api_url", fake.url + fake.prefix)
    source = GitHubSource(REPO, policy=FAST, progress=messages.append, **kwargs)
    return source.ingest(store)


def stored(store: Store) -> dict[int, Issue]:
    with store.engine.connect() as conn:
        return {i.number: i for i in select_issues(conn, with_raw=True)}


def all_comments(store: Store) -> list[Comment]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(schema.comments).order_by(schema.comments.c.comment_id))
        return [row_to_comment(r) for r in rows]


def sync_state(store: Store) -> SyncState:
    with store.begin() as conn:
        return load_sync_state(conn, "github", REPO)


def snapshot(store: Store) -> tuple[Any, ...]:
    """Everything a sync writes, comparable across two stores."""
    issues = [(i, i.raw) for i in stored(store).values()]
    counts = [(r["repo"], r["issues"], r["pull_requests"]) for r in store.status()["repos"]]
    return issues, all_comments(store), sync_state(store).cursor, counts


def test_three_pages_of_issues_and_prs_are_stored(github: FakeGitHub, store: Store) -> None:
    github.rows = standard_rows()
    messages: list[str] = []
    report = sync(github, store, messages)
    reqs = github.issue_requests()
    assert reqs[0].query == {
        "state": "all",
        "per_page": "100",
        "sort": "updated",
        "direction": "asc",
    }
    assert [r.query.get("page") for r in reqs] == [None, "2", "3"]
    assert reqs[0].headers["accept"] == "application/vnd.github+json"
    assert reqs[0].headers["x-github-api-version"] == "2022-11-28"
    assert reqs[0].headers["user-agent"].startswith("adaptune/")
    assert "authorization" not in reqs[0].headers
    assert report.source == "github:acme/widgets"
    assert (report.seen, report.inserted, report.updated, report.rejected) == (13, 13, 0, [])
    status = store.status()
    assert (status["issues"], status["pull_requests"]) == (10, 3)
    assert status["repos"][0]["last_synced"] is not None
    assert messages == [
        "page 1: 5 issues, cursor 2024-01-01T05:00:00Z",
        "page 2: 5 issues, cursor 2024-01-01T10:00:00Z",
        "page 3: 3 issues, cursor 2024-01-01T13:00:00Z",
    ]
    assert stored(store)[12].is_pull_request and not stored(store)[11].is_pull_request


def test_resync_asks_since_the_cursor_and_replaces_changed_rows(
    github: FakeGitHub, store: Store
) -> None:
    github.rows = standard_rows()
    sync(github, store)
    edited = issue_obj(3, 20)
    edited["title"] = "Widget 3 breaks on Python 3.12"
    github.put(edited)
    github.put(issue_obj(14, 21, state="open"))
    before = len(github.requests)
    report = sync(github, store)
    second = github.requests[before:]
    assert len(second) == 1 and second[0].query["since"] == "2024-01-01T13:00:00Z"
    # 13 comes back (since is inclusive) unchanged; 3 was edited; 14 is new.
    assert (report.seen, report.inserted, report.updated, report.unchanged) == (3, 1, 1, 1)
    rows = stored(store)
    assert sorted(rows) == list(range(1, 15))
    assert rows[3].title == "Widget 3 breaks on Python 3.12"
    assert rows[3].updated_at == T0 + timedelta(hours=20)
    assert sync_state(store).cursor == T0 + timedelta(hours=21)


def test_explicit_since_wins_and_never_moves_the_cursor_back(
    github: FakeGitHub, store: Store
) -> None:
    github.rows = standard_rows()
    sync(github, store)
    report = sync(github, store, since=datetime(2024, 1, 1, 11, 30))  # naive means UTC
    assert github.requests[-1].query["since"] == "2024-01-01T11:30:00Z"
    assert (report.seen, report.unchanged) == (2, 2)
    assert sync_state(store).cursor == T0 + timedelta(hours=13)


def test_a_closed_only_sync_does_not_move_the_cursor(github: FakeGitHub, store: Store) -> None:
    github.rows = standard_rows()
    messages: list[str] = []
    report = sync(github, store, messages, state="closed")
    assert github.requests[0].query["state"] == "closed"
    assert report.inserted == 7 and messages[-1].endswith("cursor 2024-01-01T13:00:00Z")
    assert sync_state(store).cursor is None
    before = len(github.requests)
    report = sync(github, store)  # the open issues older than 13:00 still come
    assert "since" not in github.requests[before].query
    assert (report.inserted, report.unchanged) == (6, 7)
    assert sync_state(store).cursor == T0 + timedelta(hours=13)


def test_unchanged_repository_answers_304_and_nothing_changes(
    github: FakeGitHub, store: Store
) -> None:
    github.rows = standard_rows()
    sync(github, store)
    sync(github, store)  # since=cursor: a one-page answer whose ETag is kept
    assert "if-none-match" not in github.requests[-1].headers
    before, state = snapshot(store), sync_state(store)
    assert list(state.etags) == [GitHubSource(REPO, github.url).issues_url(state.cursor)]
    report = sync(github, store)
    assert github.requests[-1].headers["if-none-match"] == next(iter(state.etags.values()))
    assert report.not_modified
    assert (report.seen, report.inserted, report.updated, report.unchanged) == (0, 0, 0, 0)
    assert snapshot(store)[:3] == before[:3]
    assert sync_state(store).etags == state.etags
    github.put(issue_obj(2, 30))
    report = sync(github, store)
    assert not report.not_modified and report.updated == 1


def test_rate_limit_403_waits_for_the_reset(github: FakeGitHub, store: Store) -> None:
    github.rows = standard_rows()[:3]
    reset = str(int(time.time()) + 1)
    limited = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
    github.fail(is_issues, Reply(403, {"message": "API rate limit exceeded"}, limited))
    messages: list[str] = []
    report = sync(github, store, messages)
    assert report.inserted == 3 and len(github.issue_requests()) == 2
    assert any("rate limited (403)" in m and "waiting" in m for m in messages)


def test_rate_limit_429_honours_retry_after(github: FakeGitHub, store: Store) -> None:
    github.rows = standard_rows()[:3]
    github.fail(is_issues, Reply(429, {"message": "slow down"}, {"Retry-After": "1"}))
    messages: list[str] = []
    start = time.monotonic()
    report = sync(github, store, messages)
    assert time.monotonic() - start >= 1.0
    assert report.inserted == 3
    assert any("rate limited (429)" in m and "waiting 1 s" in m for m in messages)


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        (Reply(502, "<html>Bad Gateway</html>"), "HTTP 502"),
        (Reply(200, json.dumps([issue_obj(1, 1)] * 5), truncate=True), "RemoteProtocolError"),
    ],
    ids=["502", "truncated"],
)
def test_transient_failure_is_retried(
    github: FakeGitHub, store: Store, reply: Reply, problem: str
) -> None:
    github.rows = standard_rows()
    github.fail(on_page(2), reply)
    messages: list[str] = []
    report = sync(github, store, messages)
    assert (report.seen, report.inserted) == (13, 13)
    assert [r.query.get("page") for r in github.issue_requests()] == [None, "2", "2", "3"]
    assert any(problem in m and "retry 1/2" in m for m in messages)


def test_persistent_500_keeps_the_good_pages_and_resumes_from_the_cursor(
    github: FakeGitHub, store: Store
) -> None:
    github.rows = standard_rows()
    github.fail(on_page(3), Reply(500, {"message": "boom"}), times=None)
    with pytest.raises(RemoteError) as err:
        sync(github, store)
    message = str(err.value)
    assert "HTTP 500" in message and f"/repos/{REPO}/issues?" in message and "page=3" in message
    assert "run the sync again" in message
    assert sorted(stored(store)) == list(range(1, 11))
    state = sync_state(store)
    assert state.cursor == T0 + timedelta(hours=10)
    assert state.last_synced is None and state.etags == {}
    github.faults.clear()
    before = len(github.requests)
    report = sync(github, store)
    assert github.requests[before].query["since"] == "2024-01-01T10:00:00Z"
    assert (report.seen, report.inserted, report.unchanged) == (4, 3, 1)
    assert sorted(stored(store)) == list(range(1, 14))


def test_malformed_rows_are_rejected_and_good_rows_stored(github: FakeGitHub, store: Store) -> None:
    no_created = issue_obj(20, 2)
    del no_created["created_at"]
    bad_state = {**issue_obj(21, 3), "state": "merged"}
    github.rows = [*standard_rows()[:4], no_created, bad_state, "not an object"]
    github.page_size = 10
    report = sync(github, store)
    assert (report.seen, report.inserted) == (7, 4)
    first = github.url + f"/repos/{REPO}/issues?"
    assert all(r.where.startswith(first) for r in report.rejected)
    where = {r.where.rsplit("#", 1)[1]: r.reason for r in report.rejected}
    assert where.keys() == {"20", "21", "item-0"}
    assert "created_at" in where["20"] and "state" in where["21"]
    assert "JSON object" in where["item-0"]
    assert sorted(stored(store)) == [1, 2, 3, 4]


def test_token_is_sent_but_never_logged_or_stored(
    github: FakeGitHub, store: Store, workspace: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    github.rows, github.comments = standard_rows(), standard_comments()
    github.fail(on_page(2), Reply(503, "busy"))
    messages: list[str] = []
    source = GitHubSource(REPO, github.url, token=TOKEN, comments=True, policy=FAST)
    source.progress = messages.append
    assert TOKEN not in repr(source)
    source.ingest(store)
    assert {r.headers["authorization"] for r in github.requests} == {f"Bearer {TOKEN}"}
    github.fail(lambda _r: True, Reply(401, {"message": "Bad credentials"}), times=None)
    with pytest.raises(RemoteError) as err:
        sync(github, store, messages, token=TOKEN, since=T0)
    assert "Bad credentials" in str(err.value) and TOKEN not in str(err.value)
    assert caplog.text and TOKEN not in caplog.text
    assert messages and not any(TOKEN in m for m in messages)
    store.close()
    files = [p for p in workspace.rglob("*") if p.is_file()]
    assert any(p.suffix == ".db" for p in files)
    assert not any(TOKEN.encode() in p.read_bytes() for p in files)


def test_comments_of_closed_issues_only_paginated(github: FakeGitHub, store: Store) -> None:
    github.rows = [
        issue_obj(1, 1, comments=3),
        issue_obj(2, 2, comments=0),
        issue_obj(3, 3, state="open", comments=2),
        issue_obj(4, 4, pr=True, comments=2),
        issue_obj(5, 5, comments=1),
    ]
    github.comments = {
        1: [comment_obj(101, 1), comment_obj(102, 1), comment_obj(103, 1)],
        3: [comment_obj(301, 3), comment_obj(302, 3)],
        4: [comment_obj(401, 4), comment_obj(402, 4)],
        5: [comment_obj(501, 5)],
    }
    github.page_size = 2
    base = f"/repos/{REPO}/issues"
    report = sync(github, store, comments=True)
    assert github.comment_paths() == [
        f"{base}/1/comments",
        f"{base}/1/comments?page=2",
        f"{base}/5/comments",
    ]
    assert report.comments == 4 and store.status()["comments"] == 4
    with store.engine.connect() as conn:
        ids = [c.comment_id for c in select_comments(conn, "github", REPO, 1)]
    assert ids == ["101", "102", "103"]
    report = sync(github, store, comments=True)  # nothing upserted: no comment requests
    assert report.comments == 0 and len(github.comment_paths()) == 3
    github.put(issue_obj(1, 10, comments=4))
    github.comments[1].append(comment_obj(104, 10))
    report = sync(github, store, comments=True)
    assert report.comments == 1 and github.comment_paths()[3:] == [
        f"{base}/1/comments",
        f"{base}/1/comments?page=2",
    ]
    assert [c.comment_id for c in all_comments(store)] == ["101", "102", "103", "104", "501"]


@pytest.mark.parametrize(
    "failing",
    [on_page(2), lambda r: r.path.endswith("/issues/7/comments")],
    ids=["issues-page", "comments"],
)
def test_interrupted_then_resumed_equals_one_uninterrupted_sync(
    github: FakeGitHub, store: Store, tmp_path: Path, failing: Callable[[Request], bool]
) -> None:
    github.rows, github.comments = standard_rows(), standard_comments()
    github.fail(failing, Reply(500, {"message": "boom"}), times=None)
    with pytest.raises(RemoteError):
        sync(github, store, comments=True)
    assert sorted(stored(store)) == [1, 2, 3, 4, 5]
    github.faults.clear()
    sync(github, store, comments=True)
    other = open_store(load_settings(home=tmp_path / "other"))
    try:
        sync(github, other, comments=True)
        assert snapshot(store) == snapshot(other)
    finally:
        other.close()
    assert len(all_comments(store)) == sum(n % 3 for n in range(1, 14, 2))


def test_enterprise_api_url_with_a_path_prefix(github: FakeGitHub, store: Store) -> None:
    github.rows, github.prefix = standard_rows(), "/api/v3"
    report = sync(github, store, api_url=github.url + "/api/v3/")
    assert report.inserted == 13
    assert len(github.requests) == 3
    assert all(r.path == f"/api/v3/repos/{REPO}/issues" for r in github.requests)


def test_next_link_to_another_host_is_refused(github: FakeGitHub, store: Store) -> None:
    link = {"Link": '<http://elsewhere.invalid/repos/acme/widgets/issues?page=2>; rel="next"'}
    github.fail(is_issues, Reply(200, [issue_obj(1, 1)], link))
    with pytest.raises(RemoteError, match="another host"):
        sync(github, store, token=TOKEN)
    assert len(github.requests) == 1 and sorted(stored(store)) == [1]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"repo": "widgets"},
        {"repo": "acme/widgets/extra"},
        {"repo": ""},
        {"repo": "../widgets"},
        {"repo": "https://github.com/acme/widgets"},
        {"state": "merged"},
        {"api_url": "api.github.com"},
        {"api_url": "https://user:pw@github.example/api/v3"},
        {"token": f"{TOKEN} x"},
    ],
)
def test_bad_settings_raise_config_error(kwargs: dict[str, Any]) -> None:
    repo = kwargs.pop("repo", REPO)
    with pytest.raises(ConfigError) as err:
        GitHubSource(repo, **kwargs)
    assert TOKEN not in str(err.value)
    if repo != REPO:
        assert "owner/name" in str(err.value)


def test_real_github_objects_round_trip(github: FakeGitHub, store: Store) -> None:
    path = shared_file("github/huggingface-datasets.issues.jsonl.gz")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in itertools.islice(f, 120)]
    github.rows, github.page_size = rows, 50
    report = sync(github, store)
    assert (report.seen, report.inserted, report.rejected) == (120, 120, [])
    prs = sum(isinstance(r.get("pull_request"), dict) for r in rows)
    status = store.status()
    assert (status["issues"], status["pull_requests"]) == (120 - prs, prs)
    newest = max(_parse(r["updated_at"]) for r in rows)
    assert sync_state(store).cursor == newest


def test_a_row_edited_mid_sync_shifts_pages_but_nothing_is_skipped(
    github: FakeGitHub, store: Store
) -> None:
    """Editing a row already read moves it to the end: offsets shift, one row would be missed."""
    github.rows = standard_rows()
    edited = {"done": False}
    original = github.__call__

    def edit_after_page_one(req: Request) -> Reply:
        reply = original(req)
        if is_issues(req) and req.query.get("page") is None and not edited["done"]:
            edited["done"] = True
            github.put({**issue_obj(2, 50, state="open"), "title": "edited during the sync"})
        return reply

    assert github.server is not None
    github.server.handler = edit_after_page_one
    messages: list[str] = []
    sync(github, store, messages)
    got = stored(store)
    assert sorted(got) == list(range(1, 14))  # row 6 moved onto page 1 after it was read
    assert got[2].title == "edited during the sync"
    assert any("re-reading" in m for m in messages)
    assert sync_state(store).cursor == T0 + timedelta(hours=50)


def test_endless_rate_limiting_gives_up_with_a_clear_error(
    github: FakeGitHub, store: Store
) -> None:
    github.rows = standard_rows()
    github.fail(is_issues, Reply(429, {"message": "slow down"}, {"Retry-After": "0"}), None)
    policy = RetryPolicy(retries=1, backoff=0.01, max_rate_waits=3)
    source = GitHubSource(REPO, api_url=github.url, policy=policy)
    with pytest.raises(RemoteError, match="rate limited"):
        source.ingest(store)
    assert len(github.issue_requests()) == 4
