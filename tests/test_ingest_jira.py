"""The Jira source against a fake Jira served by a real local HTTP server, and its conversions.

The fake answers in the shapes Atlassian documents: Cloud's ``GET /rest/api/3/search/jql``
(``issues``, ``nextPageToken`` absent on the last page, ``isLast``; ids only unless ``fields`` is
named), Server's ``GET /rest/api/2/search`` (``startAt``, ``maxResults``, ``total``), and
``/issue/{key}/comment`` pages. It honours ``updated >= "yyyy-MM-dd HH:mm"`` in the JQL, so
incremental syncs are checked by what comes back, not only by what was asked. Nothing is patched.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adaptune.errors import ConfigError, RemoteError
from adaptune.ingest.http import RetryPolicy
from adaptune.ingest.jira import (
    FIELDS,
    SAFETY_MARGIN,
    JiraSource,
    adf_to_text,
    build_jql,
    jira_comment,
    jira_issue,
)
from adaptune.ingest.normalize import RowError
from adaptune.store import Store
from adaptune.store.issues import select_comments, select_issues
from adaptune.store.sync import load_sync_state
from adaptune.types import IngestReport, Issue
from local_server import LocalServer, Reply, Request

CLOUD = "/rest/api/3/search/jql"
SERVER = "/rest/api/2/search"
T0 = datetime(2024, 1, 15, 10, 30, tzinfo=UTC)
FAST = RetryPolicy(retries=2, backoff=0.01, max_backoff=0.05, timeout=5.0)
EMAIL = "mia@example.com"
TOKEN = "ATATT3xFfGF0-s3cr3t-T0KEN-9f8e7d"


def ts(hours: float) -> str:
    """Jira's timestamp format (``+0000``, no colon) ``hours`` after T0."""
    return (T0 + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def p(*inline: dict[str, Any]) -> dict[str, Any]:
    return {"type": "paragraph", "content": list(inline)}


def t(text: str, *marks: dict[str, Any]) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "text", "text": text}
    return {**node, "marks": list(marks)} if marks else node


def doc(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"version": 1, "type": "doc", "content": list(blocks)}


def li(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"type": "listItem", "content": list(blocks)}


def cell(text: str, kind: str = "tableCell") -> dict[str, Any]:
    return {"type": kind, "attrs": {}, "content": [p(t(text))]}


def comment_obj(cid: int, text: str, hours: float, cloud: bool = True) -> dict[str, Any]:
    """A comment as ``/issue/{key}/comment`` and the embedded ``fields.comment`` give it."""
    author = {"accountId": "5b10a2844c20165700ede21g", "displayName": "Mia Krystof"}
    return {
        "self": f"https://example.atlassian.net/rest/api/3/issue/10010/comment/{cid}",
        "id": str(cid),
        "author": {**author, "active": False},
        "body": doc(p(t(text))) if cloud else text,
        "updateAuthor": author,
        "created": ts(hours),
        "updated": ts(hours),
        "jsdPublic": True,
    }


def issue_obj(
    key: str,
    hours: float,
    summary: str | None = None,
    done: bool = False,
    cloud: bool = True,
    comments: list[dict[str, Any]] | None = None,
    total: int | None = None,
) -> dict[str, Any]:
    """An issue in the documented search shape (ADF description on Cloud, a string on Server)."""
    project, num = key.split("-")
    api = 3 if cloud else 2
    status = {"name": "Done", "statusCategory": {"id": 3, "key": "done", "name": "Done"}}
    todo = {"name": "To Do", "statusCategory": {"id": 2, "key": "new", "name": "To Do"}}
    text = f"Widget {key} crashes on start."
    comments = comments or []
    fields: dict[str, Any] = {
        "summary": summary or f"Widget {key} crashes",
        "description": doc(p(t(text))) if cloud else text,
        "status": status if done else todo,
        "resolution": {"id": "10000", "name": "Fixed"} if done else None,
        "resolutiondate": ts(hours) if done else None,
        "labels": ["crash"],
        "components": [{"id": "10000", "name": "Engine"}],
        "issuetype": {"id": "10001", "name": "Bug", "subtask": False},
        "created": ts(0),
        "updated": ts(hours),
        "reporter": {"accountId": "5b10ac8d82e05b22cc7d4ef5", "displayName": "Mia Krystof"},
        "project": {"id": "10000", "key": project, "name": "Example", "projectTypeKey": "software"},
        "comment": {
            "comments": comments,
            "maxResults": len(comments),
            "total": len(comments) if total is None else total,
            "startAt": 0,
        },
    }
    return {
        "expand": "renderedFields,names,schema,operations,editmeta,changelog",
        "id": str(10000 + int(num)),
        "self": f"https://example.atlassian.net/rest/api/{api}/issue/{10000 + int(num)}",
        "key": key,
        "fields": fields,
    }


def _updated(obj: dict[str, Any]) -> datetime:
    return datetime.strptime(obj["fields"]["updated"], "%Y-%m-%dT%H:%M:%S.%f%z")


@dataclass
class FakeJira:
    """A Jira site with one search API (``api``); the other path answers ``other_status``."""

    issues: list[dict[str, Any]]
    api: str = "cloud"
    other_status: int = 404
    extra_comments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    faults: list[Reply] = field(default_factory=list)
    """Replies given, in order, to the first search requests (rate limits, errors)."""
    broken_page: int | None = None
    """The search request (1, 2, …) from which on the site answers 400."""
    searched: int = 0

    def __call__(self, req: Request) -> Reply:
        if req.path in (CLOUD, SERVER):
            self.searched += 1
            if self.faults:
                return self.faults.pop(0)
            if self.broken_page is not None and self.searched >= self.broken_page:
                return Reply(400, {"errorMessages": ["Something broke."], "errors": {}})
        if req.path == CLOUD:
            return self.cloud(req) if self.api == "cloud" else self.missing()
        if req.path == SERVER:
            return self.server(req) if self.api == "server" else self.missing()
        if m := re.fullmatch(r"/rest/api/[23]/issue/([A-Z]+-\d+)/comment", req.path):
            return self.comments(m.group(1), req)
        return Reply(404, {"errorMessages": ["Not found"], "errors": {}})

    def missing(self) -> Reply:
        message = "The requested API has been removed." if self.other_status == 410 else "Nope"
        return Reply(self.other_status, {"errorMessages": [message], "errors": {}})

    def found(self, req: Request) -> list[dict[str, Any]]:
        """Issues matching the JQL's ``updated >=`` (read as UTC), oldest update first."""
        since = re.search(r'updated >= "([\d-]+ [\d:]+)"', req.query.get("jql", ""))
        out = sorted(self.issues, key=_updated)
        if since:
            start = datetime.strptime(since.group(1), "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
            out = [i for i in out if _updated(i) >= start]
        if not req.query.get("fields"):
            out = [{"id": i["id"]} for i in out]  # Cloud answers ids only without fields
        return out

    def cloud(self, req: Request) -> Reply:
        found, size = self.found(req), int(req.query.get("maxResults", 50))
        start = int(req.query.get("nextPageToken", "tok0").removeprefix("tok"))
        body: dict[str, Any] = {"issues": found[start : start + size]}
        if start + size < len(found):
            body["nextPageToken"] = f"tok{start + size}"
        body["isLast"] = start + size >= len(found)
        return Reply(200, body)

    def server(self, req: Request) -> Reply:
        found, size = self.found(req), int(req.query.get("maxResults", 50))
        start = int(req.query.get("startAt", 0))
        body = {"expand": "names,schema", "startAt": start, "maxResults": size}
        return Reply(200, {**body, "total": len(found), "issues": found[start : start + size]})

    def comments(self, key: str, req: Request) -> Reply:
        embedded = next(i for i in self.issues if i["key"] == key)["fields"]["comment"]
        every = embedded["comments"] + self.extra_comments.get(key, [])
        start, size = int(req.query.get("startAt", 0)), int(req.query.get("maxResults", 50))
        page = every[start : start + size]
        return Reply(
            200, {"startAt": start, "maxResults": size, "total": len(every), "comments": page}
        )


@dataclass
class Run:
    """What one ingest did: its report, the requests the site saw, the progress messages."""

    report: IngestReport
    requests: list[Request]
    messages: list[str]
    url: str

    @property
    def searches(self) -> list[Request]:
        return [r for r in self.requests if r.path in (CLOUD, SERVER)]


class Site:
    """One real local server for the whole module; each run puts its fake Jira behind it."""

    def __init__(self) -> None:
        self.fake: FakeJira | None = None
        self.server = LocalServer(self.handle)

    def handle(self, req: Request) -> Reply:
        assert self.fake is not None
        return self.fake(req)

    def run(self, fake: FakeJira, store: Store, jql: str = "project = PROJ", **kw: Any) -> Run:
        """Ingest ``jql`` from ``fake`` into ``store`` through the real HTTP server."""
        self.fake, start, messages = fake, len(self.server.requests), []
        source = JiraSource(self.server.url, jql, policy=FAST, progress=messages.append, **kw)
        report = source.ingest(store)
        return Run(report, self.server.requests[start:], messages, self.server.url)


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    """The module's server (started once: stopping one takes half a second)."""
    holder = Site()
    with holder.server:
        yield holder


def stored(store: Store) -> dict[str, Issue]:
    with store.begin() as conn:
        return {str(i.key): i for i in select_issues(conn)}


# --- ADF ---------------------------------------------------------------------------------------

NESTED = {
    "type": "bulletList",
    "content": [
        li(p(t("one")), {"type": "bulletList", "content": [li(p(t("one.a"))), li(p(t("one.b")))]}),
        li(p(t("two"))),
    ],
}
TABLE = {
    "type": "table",
    "attrs": {"isNumberColumnEnabled": False, "layout": "default"},
    "content": [
        {"type": "tableRow", "content": [cell("Version", "tableHeader"), cell("Works")]},
        {"type": "tableRow", "content": [cell("1.2"), cell("no")]},
    ],
}
MENTION = {"type": "mention", "attrs": {"id": "ABCDE-ABCDE-ABCDE-ABCDE", "text": "@Bradley Ayers"}}
EMOJI = {"type": "emoji", "attrs": {"shortName": ":grinning:", "text": "😀"}}
LINK = {"type": "link", "attrs": {"href": "https://example.com/docs"}}


@pytest.mark.parametrize(
    ("node", "text"),
    [
        (None, ""),
        (42, ""),
        ("already plain", "already plain"),
        ({}, ""),
        (doc(), ""),
        ({"type": "doc", "content": "garbage"}, ""),
        ([1, "x", None, {"type": None}], ""),
        (doc(p(t("Hello "), t("world", {"type": "strong"}))), "Hello world"),
        (doc(p(t("a")), p(t("b"))), "a\n\nb"),
        (doc(p(t("line one"), {"type": "hardBreak"}, t("line two"))), "line one\nline two"),
        (doc({"type": "heading", "attrs": {"level": 3}, "content": [t("Steps")]}), "### Steps"),
        (doc(NESTED), "- one\n  - one.a\n  - one.b\n- two"),
        (
            doc(
                {
                    "type": "orderedList",
                    "attrs": {"order": 3},
                    "content": [li(p(t("x"))), li(p(t("y")))],
                }
            ),
            "3. x\n4. y",
        ),
        (
            doc(
                {
                    "type": "codeBlock",
                    "attrs": {"language": "python"},
                    "content": [t("x = 1\nprint(x)")],
                }
            ),
            "```python\nx = 1\nprint(x)\n```",
        ),
        (doc({"type": "codeBlock", "content": []}), "```\n\n```"),
        (doc(p(t("ping "), MENTION, t(" please"))), "ping @Bradley Ayers please"),
        (doc(p({"type": "mention", "attrs": {"id": "557058:f5"}})), "@557058:f5"),
        (doc(p(t("thanks "), EMOJI)), "thanks 😀"),
        (doc(p({"type": "emoji", "attrs": {"shortName": ":awthanks:"}})), ":awthanks:"),
        (doc(p(t("see "), t("the docs", LINK))), "see the docs"),
        (doc(p(t("run "), t("pip check", {"type": "code"}))), "run `pip check`"),
        (doc(p({"type": "inlineCard", "attrs": {"url": "https://x.test/1"}})), "https://x.test/1"),
        (doc(TABLE), "Version | Works\n1.2 | no"),
        (doc({"type": "blockquote", "content": [p(t("quoted"))]}), "> quoted"),
        (doc(p(t("a")), {"type": "rule"}, p(t("b"))), "a\n\n---\n\nb"),
        (doc({"type": "mediaSingle", "content": [{"type": "media", "attrs": {"id": "1"}}]}), ""),
        (doc({"type": "panel", "attrs": {"panelType": "info"}, "content": [p(t("note"))]}), "note"),
        (doc({"type": "someFutureNode", "content": [t("still read")]}), "still read"),
        (doc(p({"type": "text", "text": 5}, {"type": "mention", "attrs": "bad"})), ""),
    ],
)
def test_adf_to_text(node: Any, text: str) -> None:
    assert adf_to_text(node) == text


def test_adf_to_text_survives_absurd_nesting() -> None:
    from adaptune.ingest.jira_adf import MAX_DEPTH

    def quotes(levels: int) -> dict[str, Any]:
        root: dict[str, Any] = doc()
        node = root
        for _ in range(levels):
            child: dict[str, Any] = {"type": "blockquote", "content": []}
            node["content"].append(child)
            node = child
        node["content"].append(p(t("deep")))
        return root

    # within the limit every level is kept; past it the levels below are cut off, without a
    # RecursionError, leaving only the quote marks of the levels above the cut
    assert adf_to_text(quotes(MAX_DEPTH - 1)) == "> " * (MAX_DEPTH - 1) + "deep"
    cut = adf_to_text(quotes(5000))
    assert "deep" not in cut and set(cut) <= {">", " "} and cut.count(">") <= MAX_DEPTH


# --- mapping -----------------------------------------------------------------------------------


def test_jira_issue_maps_a_cloud_issue() -> None:
    obj = issue_obj("PROJ-123", 5, done=True, comments=[comment_obj(1, "hi", 1)], total=4)
    issue = jira_issue(obj, base_url="https://example.atlassian.net/")
    assert (issue.source, issue.repo, issue.number, issue.key) == ("jira", "PROJ", 123, "PROJ-123")
    assert issue.title == "Widget PROJ-123 crashes"
    assert issue.body == "Widget PROJ-123 crashes on start."
    assert (issue.state, issue.state_reason, issue.issue_type) == ("closed", "Fixed", "Bug")
    assert issue.labels == ("crash", "Engine")
    assert issue.author == "Mia Krystof"
    assert issue.created_at == T0
    assert issue.updated_at == issue.closed_at == T0 + timedelta(hours=5)
    assert issue.url == "https://example.atlassian.net/browse/PROJ-123"
    assert issue.comments_count == 4
    assert issue.raw is obj


def test_jira_issue_maps_a_server_issue() -> None:
    obj = issue_obj("HSP-7", 2, cloud=False)
    obj["fields"]["project"] = None
    obj["fields"]["created"] = "2024-01-15T12:30:00.000+0200"
    issue = jira_issue(obj)
    assert (issue.repo, issue.number, issue.state, issue.closed_at) == ("HSP", 7, "open", None)
    assert issue.body == "Widget HSP-7 crashes on start."
    assert issue.created_at == T0
    assert issue.url == "https://example.atlassian.net/browse/HSP-7"  # from the self link
    assert jira_issue(obj, project="OTHER").repo == "OTHER"


def test_jira_issue_is_closed_by_resolution_alone() -> None:
    obj = issue_obj("PROJ-1", 1)
    obj["fields"]["resolution"] = {"name": "Won't Do"}
    issue = jira_issue(obj)
    assert (issue.state, issue.state_reason) == ("closed", "Won't Do")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda o: "not an object", "expected a JSON object"),
        (lambda o: {**o, "key": None}, "missing field 'key'"),
        (lambda o: {**o, "key": "no number"}, "bad issue key"),
        (lambda o: {"id": o["id"], "key": o["key"]}, "missing field 'fields'"),
        (lambda o: {**o, "fields": {**o["fields"], "summary": None}}, "missing field 'summary'"),
        (lambda o: {**o, "fields": {**o["fields"], "created": None}}, "missing field 'created'"),
        (lambda o: {**o, "fields": {**o["fields"], "updated": "yesterday"}}, "'updated'"),
        (lambda o: {**o, "fields": {**o["fields"], "description": 7}}, "'description'"),
    ],
)
def test_jira_issue_rejects_bad_objects(change: Any, reason: str) -> None:
    with pytest.raises(RowError, match=reason):
        jira_issue(change(issue_obj("PROJ-1", 1)))


def test_jira_comment_maps_adf_and_string_bodies() -> None:
    c = jira_comment(comment_obj(10000, "Fixed in 1.3", 3), "PROJ", 12)
    assert (c.source, c.repo, c.issue_number, c.comment_id) == ("jira", "PROJ", 12, "10000")
    assert (c.body, c.author, c.created_at) == (
        "Fixed in 1.3",
        "Mia Krystof",
        T0 + timedelta(hours=3),
    )
    assert jira_comment(comment_obj(5, "plain", 1, cloud=False), "HSP", 1).body == "plain"
    with pytest.raises(RowError):
        jira_comment({"body": "no id"}, "PROJ", 1)


@pytest.mark.parametrize(
    ("jql", "since", "sent", "ours"),
    [
        ("project = PROJ", None, "project = PROJ ORDER BY updated ASC", True),
        (
            "project = PROJ",
            T0,
            '(project = PROJ) AND updated >= "2024-01-15 10:30" ORDER BY updated ASC',
            True,
        ),
        (
            "project = A OR project = B order by created DESC",
            T0,
            '(project = A OR project = B) AND updated >= "2024-01-15 10:30" order by created DESC',
            False,
        ),
        (
            "project = PROJ AND updated >= -7d",
            T0,
            "project = PROJ AND updated >= -7d ORDER BY updated ASC",
            True,
        ),
        (
            'summary ~ "order by" AND text ~ "updated"',
            None,
            'summary ~ "order by" AND text ~ "updated" ORDER BY updated ASC',
            True,
        ),
        ("ORDER BY key", T0, 'updated >= "2024-01-15 10:30" ORDER BY key', False),
    ],
)
def test_build_jql(jql: str, since: datetime | None, sent: str, ours: bool) -> None:
    assert build_jql(jql, since) == (sent, ours)


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="auto, cloud or server"):
        JiraSource("https://example.atlassian.net", "project = P", api="v4")
    with pytest.raises(ConfigError, match="without an API token"):
        JiraSource("https://example.atlassian.net", "project = P", email=EMAIL)
    with pytest.raises(ConfigError, match="not a Jira address"):
        JiraSource("example.atlassian.net", "project = P")
    with pytest.raises(ConfigError, match="JQL is empty"):
        JiraSource("https://example.atlassian.net", "  ")


# --- against the fake site ---------------------------------------------------------------------


def test_cloud_pages_with_next_page_token_and_asks_for_fields(site: Site, store: Store) -> None:
    fake = FakeJira([issue_obj(f"PROJ-{n}", n) for n in range(1, 6)])
    run = site.run(fake, store, page_size=2)
    assert [r.path for r in run.searches] == [CLOUD] * 3
    assert [r.query.get("nextPageToken") for r in run.searches] == [None, "tok2", "tok4"]
    for r in run.searches:
        assert r.query["jql"] == "project = PROJ ORDER BY updated ASC"
        assert r.query["maxResults"] == "2"
        assert set(FIELDS.split(",")) <= set(r.query["fields"].split(","))
    assert {"summary", "description", "comment", "resolutiondate"} <= set(FIELDS.split(","))
    issues = stored(store)
    assert sorted(issues) == [f"PROJ-{n}" for n in range(1, 6)]
    assert issues["PROJ-3"].body == "Widget PROJ-3 crashes on start."
    assert issues["PROJ-3"].url == f"{run.url}/browse/PROJ-3"
    report = run.report
    assert (report.seen, report.inserted, report.source) == (5, 5, "jira:project = PROJ")
    assert report.repos == {("jira", "PROJ")}
    assert [m for m in run.messages if "page" in m] == [
        "jira: page 1: 2 issues, 2 so far",
        "jira: page 2: 2 issues, 4 so far",
        "jira: page 3: 1 issues, 5 so far",
    ]


def test_server_pages_with_start_at_and_total(site: Site, store: Store) -> None:
    fake = FakeJira([issue_obj(f"HSP-{n}", n, cloud=False) for n in range(1, 6)], api="server")
    run = site.run(fake, store, api="server", page_size=2, jql="project = HSP")
    assert [r.path for r in run.searches] == [SERVER] * 3
    assert [r.query["startAt"] for r in run.searches] == ["0", "2", "4"]
    assert all(set(FIELDS.split(",")) <= set(r.query["fields"].split(",")) for r in run.searches)
    assert run.report.inserted == 5
    assert stored(store)["HSP-4"].body == "Widget HSP-4 crashes on start."


@pytest.mark.parametrize("status", [404, 410])
def test_auto_falls_back_to_server_when_cloud_search_is_missing(
    site: Site, store: Store, status: int
) -> None:
    issues = [issue_obj(f"HSP-{n}", n, cloud=False) for n in range(1, 4)]
    fake = FakeJira(issues, api="server", other_status=status)
    run = site.run(fake, store, page_size=2, jql="project = HSP")
    assert [r.path for r in run.searches] == [CLOUD, SERVER, SERVER]
    assert run.report.inserted == 3
    assert any(f"HTTP {status}" in m for m in run.messages)


def test_auto_uses_the_cloud_answer_it_already_has(site: Site, store: Store) -> None:
    run = site.run(FakeJira([issue_obj("PROJ-1", 1)]), store)
    assert [r.path for r in run.searches] == [CLOUD]
    assert run.report.inserted == 1


@pytest.mark.parametrize(("api", "status"), [("server", 410), ("cloud", 404)])
def test_a_forced_api_that_is_missing_is_an_error(
    site: Site, store: Store, api: str, status: int
) -> None:
    other = "cloud" if api == "server" else "server"
    fake = FakeJira([issue_obj("PROJ-1", 1)], api=other, other_status=status)
    with pytest.raises(RemoteError, match=f"HTTP {status}"):
        site.run(fake, store, api=api)
    assert stored(store) == {}


@pytest.mark.parametrize(
    ("email", "token", "header"),
    [
        (EMAIL, TOKEN, "Basic " + base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode()),
        (None, TOKEN, f"Bearer {TOKEN}"),
        (None, None, None),
    ],
)
def test_auth_header(
    site: Site, store: Store, email: str | None, token: str | None, header: str | None
) -> None:
    fake = FakeJira([issue_obj("PROJ-1", 1, comments=[comment_obj(1, "a", 1)], total=2)])
    fake.extra_comments["PROJ-1"] = [comment_obj(2, "b", 2)]
    run = site.run(fake, store, email=email, token=token)
    assert len(run.requests) == 2  # the search and the extra comment page
    assert all(r.headers.get("authorization") == header for r in run.requests)


def test_incremental_resync_asks_from_the_cursor_and_replaces_updated_issues(
    site: Site, store: Store
) -> None:
    fake = FakeJira([issue_obj(f"PROJ-{n}", 24 * n) for n in range(1, 4)])
    site.run(fake, store)
    with store.begin() as conn:
        state = load_sync_state(conn, "jira", "PROJ")
    assert state.cursor == T0 + timedelta(hours=72)
    assert state.last_synced is not None

    fake.issues[1] = issue_obj("PROJ-2", 24 * 5, summary="Widget crashes when cold", done=True)
    run = site.run(fake, store)
    since = T0 + timedelta(hours=72) - SAFETY_MARGIN
    (sent,) = run.searches
    assert sent.query["jql"] == (
        f'(project = PROJ) AND updated >= "{since:%Y-%m-%d %H:%M}" ORDER BY updated ASC'
    )
    report = run.report
    assert (report.seen, report.inserted, report.updated, report.unchanged) == (2, 0, 1, 1)
    issues = stored(store)
    assert sorted(issues) == ["PROJ-1", "PROJ-2", "PROJ-3"]
    assert (issues["PROJ-2"].title, issues["PROJ-2"].state) == (
        "Widget crashes when cold",
        "closed",
    )
    with store.begin() as conn:
        assert load_sync_state(conn, "jira", "PROJ").cursor == T0 + timedelta(hours=120)


def test_cursor_is_the_oldest_over_the_projects_a_jql_touched(site: Site, store: Store) -> None:
    jql = "project in (AAA, BBB)"
    fake = FakeJira([issue_obj("AAA-1", 10), issue_obj("BBB-1", 50), issue_obj("AAA-2", 90)])
    site.run(fake, store, jql=jql)
    run = site.run(fake, store, jql=jql)
    since = T0 + timedelta(hours=50) - SAFETY_MARGIN
    assert f'updated >= "{since:%Y-%m-%d %H:%M}"' in run.searches[0].query["jql"]
    assert run.report.seen == 2  # BBB-1 and AAA-2, not AAA-1


def test_a_changed_jql_reads_everything_again(site: Site, store: Store) -> None:
    fake = FakeJira([issue_obj("PROJ-1", 1)])
    site.run(fake, store, jql="project = PROJ AND labels = crash")
    run = site.run(fake, store, jql="project = PROJ")
    assert run.searches[0].query["jql"] == "project = PROJ ORDER BY updated ASC"


def test_a_users_order_by_is_kept(site: Site, store: Store) -> None:
    fake = FakeJira([issue_obj("PROJ-1", 1)])
    jql = "project = PROJ ORDER BY created DESC"
    first = site.run(fake, store, jql=jql)
    second = site.run(fake, store, jql=jql)
    since = T0 + timedelta(hours=1) - SAFETY_MARGIN
    assert first.searches[0].query["jql"] == jql
    assert second.searches[0].query["jql"] == (
        f'(project = PROJ) AND updated >= "{since:%Y-%m-%d %H:%M}" ORDER BY created DESC'
    )


@pytest.mark.parametrize(
    ("jql", "cursor"),
    [("project = PROJ", T0 + timedelta(hours=2)), ("project = PROJ ORDER BY key", None)],
)
def test_an_interrupted_run_keeps_the_cursor_only_when_the_order_is_ours(
    site: Site, store: Store, jql: str, cursor: datetime | None
) -> None:
    fake = FakeJira([issue_obj(f"PROJ-{n}", n) for n in range(1, 6)], broken_page=2)
    with pytest.raises(RemoteError, match="HTTP 400"):
        site.run(fake, store, jql=jql, page_size=2)
    assert sorted(stored(store)) == ["PROJ-1", "PROJ-2"]
    with store.begin() as conn:
        state = load_sync_state(conn, "jira", "PROJ")
    assert (state.cursor, state.last_synced) == (cursor, None)


def test_comments_embedded_and_fetched_are_stored(site: Site, store: Store) -> None:
    embedded = [comment_obj(10001, "Seen on 1.2", 1), comment_obj(10002, "Also on 1.1", 2)]
    fake = FakeJira([issue_obj("PROJ-1", 5, comments=embedded, total=3)])
    fake.extra_comments["PROJ-1"] = [comment_obj(10003, "Fixed by upgrading", 4)]
    run = site.run(fake, store, page_size=50)
    (extra,) = [r for r in run.requests if r.path.endswith("/comment")]
    assert extra.path == "/rest/api/3/issue/PROJ-1/comment"
    assert extra.query["startAt"] == "2"
    with store.begin() as conn:
        comments = select_comments(conn, "jira", "PROJ", 1)
    assert [c.body for c in comments] == ["Seen on 1.2", "Also on 1.1", "Fixed by upgrading"]
    assert [c.comment_id for c in comments] == ["10001", "10002", "10003"]
    assert run.report.comments == 3
    assert stored(store)["PROJ-1"].comments_count == 3


def test_comments_can_be_left_out(site: Site, store: Store) -> None:
    fake = FakeJira([issue_obj("PROJ-1", 5, comments=[comment_obj(1, "x", 1)], total=2)])
    run = site.run(fake, store, comments=False)
    assert [r.path for r in run.requests] == [CLOUD]
    assert run.report.comments == 0


def test_a_bad_issue_is_rejected_and_the_others_stored(site: Site, store: Store) -> None:
    bad = issue_obj("PROJ-2", 2)
    del bad["fields"]["created"]
    keyless = {**issue_obj("PROJ-4", 4), "key": None}
    fake = FakeJira([issue_obj("PROJ-1", 1), bad, issue_obj("PROJ-3", 3), keyless])
    run = site.run(fake, store)
    assert sorted(stored(store)) == ["PROJ-1", "PROJ-3"]
    assert (run.report.seen, run.report.inserted) == (4, 2)
    assert [(r.where, r.reason) for r in run.report.rejected] == [
        (f"{run.url}{CLOUD}#PROJ-2", "missing field 'created'"),
        (f"{run.url}{CLOUD}#4", "missing field 'key'"),
    ]


def test_rate_limit_with_retry_after_then_success(site: Site, store: Store) -> None:
    limited = Reply(429, {"errorMessages": ["Rate limit exceeded."]}, {"Retry-After": "0"})
    fake = FakeJira([issue_obj("PROJ-1", 1)], faults=[limited])
    run = site.run(fake, store, email=EMAIL, token=TOKEN)
    assert [r.path for r in run.searches] == [CLOUD, CLOUD]
    assert run.report.inserted == 1
    assert any("rate limited (429)" in m for m in run.messages)


def test_credentials_never_reach_logs_messages_or_the_database(
    site: Site, store: Store, workspace: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = [TOKEN, base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode()]
    fake = FakeJira([issue_obj("PROJ-1", 1, comments=[comment_obj(1, "a", 1)], total=2)])
    fake.extra_comments["PROJ-1"] = [comment_obj(2, "b", 2)]
    fake.faults = [Reply(503, {"errorMessages": ["busy"]})]
    runs = [site.run(fake, store, email=EMAIL, token=TOKEN), site.run(fake, store, token=TOKEN)]
    fake.faults = [Reply(401, {"errorMessages": ["You are not authenticated."]})]
    with pytest.raises(RemoteError) as refused:
        site.run(fake, store, email=EMAIL, token=TOKEN, api="cloud")
    store.close()
    data = b"".join(f.read_bytes() for f in workspace.rglob("*") if f.is_file())
    assert b"PROJ-1" in data  # the database really is in these files
    assert "HTTP 503" in caplog.text and "HTTP Request" in caplog.text  # the logs were captured
    texts = [caplog.text, str(refused.value), *(m for r in runs for m in r.messages)]
    for secret in secrets:
        assert secret.encode() not in data
        assert not any(secret in text for text in texts)
