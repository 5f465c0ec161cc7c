"""Jira as a source: issues found by a JQL search, on Jira Cloud or Server / Data Center.

- Cloud: ``GET /rest/api/3/search/jql`` (the old ``/rest/api/3/search`` answers 410), paged
  with ``nextPageToken`` until ``isLast``; descriptions and comments are ADF.
- Server / Data Center: ``GET /rest/api/2/search``, paged with ``startAt`` / ``total``;
  descriptions and comments are plain strings.
- ``api="auto"`` asks Cloud first and falls back to Server when Cloud's path answers 404 or 410.
- Auth: e-mail + API token is HTTP Basic (Cloud), a token alone is a Bearer personal access token
  (Server), neither is anonymous. Credentials stay in the HTTP client's headers: they are never
  logged, stored or put in a message.

Both APIs return only ids unless fields are named, so :data:`FIELDS` are asked for by name.
Comments past the ones embedded in a search answer are fetched from ``/issue/{key}/comment``.
Incremental syncs are explained on :class:`JiraSource`; the pure conversions of Jira's JSON
(:func:`adf_to_text`, :func:`jira_issue`, :func:`jira_comment`) live in ``jira_adf``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select

from adaptune.errors import ConfigError, RemoteError
from adaptune.ingest.base import Progress, write_batch
from adaptune.ingest.http import HttpClient, RetryPolicy
from adaptune.ingest.jira_adf import adf_to_text, jira_comment, jira_issue
from adaptune.ingest.normalize import RowError
from adaptune.store import Store, schema
from adaptune.store.sync import load_sync_state, save_sync_state
from adaptune.types import Comment, IngestReport, Issue, Rejection

__all__ = ["FIELDS", "JiraSource", "adf_to_text", "build_jql", "jira_comment", "jira_issue"]

FIELDS = (
    "summary,description,status,resolution,labels,components,issuetype,"
    "created,updated,resolutiondate,comment,reporter,project"
)
"""The fields every search asks for (without them Cloud's search answers ids only)."""
SEARCH_PATH = {"cloud": "/rest/api/3/search/jql", "server": "/rest/api/2/search"}
COMMENT_PATH = {
    "cloud": "/rest/api/3/issue/{key}/comment",
    "server": "/rest/api/2/issue/{key}/comment",
}
SAFETY_MARGIN = timedelta(days=1)
"""How far before the cursor an incremental search starts. JQL reads dates in the user's profile
time zone (UTC-12 … UTC+14) and the search index lags behind edits; re-reading a day is cheap,
because unchanged rows are left alone."""

_QUOTED = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'")
_ORDER_BY = re.compile(r"\border\s+by\b", re.IGNORECASE)
_UPDATED = re.compile(r"\bupdated(?:date)?\b", re.IGNORECASE)


def _mask_quotes(jql: str) -> str:
    """``jql`` with quoted strings blanked out, so keywords inside them are not matched."""
    return _QUOTED.sub(lambda m: " " * len(m.group()), jql)


def build_jql(jql: str, since: datetime | None) -> tuple[str, bool]:
    """The JQL to send, and whether its order is ours (``updated ASC``).

    The user's filter is wrapped in parentheses and ANDed with ``updated >= "yyyy-MM-dd HH:mm"``
    when ``since`` is given and the filter does not restrict ``updated`` itself; ``ORDER BY
    updated ASC`` is added unless the user gave an ORDER BY of their own.
    """
    masked = _mask_quotes(jql)
    orders = list(_ORDER_BY.finditer(masked))
    cut = orders[-1].start() if orders else len(jql)
    where, order = jql[:cut].strip(), jql[cut:].strip()
    if since is not None and not _UPDATED.search(masked[:cut]):
        clause = f'updated >= "{since.astimezone(UTC):%Y-%m-%d %H:%M}"'
        where = f"({where}) AND {clause}" if where else clause
    ours = not order
    return f"{where} {order or 'ORDER BY updated ASC'}".strip(), ours


def _jql_id(jql: str) -> str:
    """Key under which a project's cursor for this JQL is kept (whitespace-insensitive)."""
    digest = hashlib.sha256(" ".join(jql.split()).encode()).hexdigest()[:16]
    return f"jql:{digest}"


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _when(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return None


class _Cursors:
    """Per-project cursors of one JQL, kept in each project's :class:`SyncState`.

    ``SyncState.cursor`` is the newest ``updated`` stored from the project, whatever the query;
    ``SyncState.etags["jql:<digest>"]`` is the newest one stored *by this JQL*, which is what an
    incremental search of this JQL may start from.
    """

    def __init__(self, store: Store, jql: str) -> None:
        self.store = store
        self.key = _jql_id(jql)
        self.pending: dict[str, datetime] = {}
        self.touched: set[str] = set()

    def since(self) -> datetime | None:
        """The oldest cursor of this JQL over the projects it touched before (``None``: never)."""
        t = schema.sync_state
        with self.store.begin() as conn:
            repos = conn.execute(select(t.c.repo).where(t.c.source == "jira")).scalars().all()
            marks = [load_sync_state(conn, "jira", r).etags.get(self.key) for r in repos]
        times = [w for w in map(_when, marks) if w is not None]
        return min(times) if times else None

    def note(self, issues: list[Issue]) -> None:
        """Remember the newest ``updated`` per project of a page that was just stored."""
        for issue in issues:
            seen = self.pending.get(issue.repo)
            self.pending[issue.repo] = max(seen or issue.updated_at, issue.updated_at)

    def save(self, finished: bool) -> None:
        """Advance the stored cursors; at the end of a run also stamp ``last_synced``."""
        now = datetime.now(UTC)
        repos = set(self.pending) | (self.touched if finished else set())
        with self.store.begin() as conn:
            for repo in sorted(repos):
                state = load_sync_state(conn, "jira", repo)
                if newest := self.pending.get(repo):
                    state.cursor = max(state.cursor or newest, newest)
                    mine = _when(state.etags.get(self.key))
                    state.etags[self.key] = max(mine or newest, newest).isoformat()
                if finished:
                    state.last_synced = now
                save_sync_state(conn, state)
        self.touched |= set(self.pending)
        self.pending.clear()


class JiraSource:
    """The issues a JQL search finds on one Jira site, with their comments.

    Incremental sync: the cursor of a JQL is the newest ``updated`` it stored, kept per project
    key found in its results (one JQL may span several projects). The next run of the same JQL
    starts from the oldest of those cursors, less :data:`SAFETY_MARGIN`, as ``(JQL) AND updated
    >= "yyyy-MM-dd HH:mm"``; a JQL never run before, or changed in any way, reads everything, so a
    narrower earlier query never hides issues from a wider later one. A JQL that restricts
    ``updated`` itself is sent unchanged. ``ORDER BY updated ASC`` is added when the JQL has no
    ORDER BY; then cursors advance after each stored page, so an interrupted run resumes where it
    stopped. With the user's own order they advance only when the run completes.
    """

    def __init__(
        self,
        url: str,
        jql: str,
        email: str | None = None,
        token: str | None = None,
        api: str = "auto",
        comments: bool = True,
        page_size: int = 100,
        policy: RetryPolicy | None = None,
        progress: Progress | None = None,
    ) -> None:
        if api not in ("auto", "cloud", "server"):
            raise ConfigError(f"--api must be auto, cloud or server, not {api!r:.40}.")
        if not jql.strip():
            raise ConfigError("The JQL is empty; give a search such as 'project = PROJ'.")
        if email and not token:
            raise ConfigError("A Jira e-mail was given without an API token; set JIRA_API_TOKEN.")
        if page_size < 1:
            raise ConfigError(f"The page size must be at least 1, not {page_size}.")
        try:
            parsed = httpx.URL(url.strip())
        except httpx.InvalidURL:
            raise ConfigError("The Jira address is not a URL; write https://SITE.") from None
        self.site = str(parsed.copy_with(username=None, password=None)).rstrip("/")
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ConfigError(f"'{self.site}' is not a Jira address; write https://SITE.")
        self.url, self.jql, self.api = url.strip().rstrip("/"), jql.strip(), api
        self.comments, self.page_size, self.policy = comments, page_size, policy
        self.progress: Progress = progress or (lambda _msg: None)
        self._headers = {"Accept": "application/json"}
        if token and not email:
            self._headers["Authorization"] = f"Bearer {token}"
        self._basic = (email, token) if email and token else None

    def ingest(self, store: Store, domain: str | None = None) -> IngestReport:
        """Search, store each page of issues (and comments) as it comes, advance the cursors."""
        report = IngestReport(source=f"jira:{self.jql}")
        cursors = _Cursors(store, self.jql)
        since = cursors.since()
        jql, ordered = build_jql(self.jql, since - SAFETY_MARGIN if since else None)
        self.progress(f"jira: searching {self.site} for {jql}")
        with HttpClient(
            self.url, self._headers, self._basic, self.policy, progress=self.progress
        ) as http:
            for number, api, raw in self._pages(http, jql):
                issues, comments = self._convert(http, api, raw, report)
                write_batch(store, report, issues, comments, domain)
                cursors.note(issues)
                if ordered:
                    cursors.save(finished=False)
                self.progress(f"jira: page {number}: {len(raw)} issues, {report.seen} so far")
        cursors.save(finished=True)
        return report

    def _detect(self, http: HttpClient, params: dict[str, Any]) -> tuple[str, Any]:
        """Which API to use, and the first Cloud page when asking already fetched it."""
        if self.api != "auto":
            return self.api, None
        resp = http.request("GET", SEARCH_PATH["cloud"], params=params)
        if resp.status_code in (404, 410):
            self.progress(f"jira: no Cloud search (HTTP {resp.status_code}); using Server's API")
            return "server", None
        if resp.status_code < 300:
            try:
                return "cloud", resp.json()
            except ValueError:
                pass
        # Errors and unreadable bodies are asked again through get_json, which retries them
        # or raises a RemoteError that explains the refusal.
        return "cloud", None

    def _pages(self, http: HttpClient, jql: str) -> Iterator[tuple[int, str, list[Any]]]:
        """Yield ``(page number, api, issue objects)`` until the search is exhausted."""
        params: dict[str, Any] = {"jql": jql, "maxResults": self.page_size, "fields": FIELDS}
        api, data = self._detect(http, params)
        if api == "server":
            params["startAt"] = 0
        number = 0
        while True:
            if data is None:
                data = http.get_json(SEARCH_PATH[api], params=params)[1]
            issues = data.get("issues") if isinstance(data, dict) else None
            if not isinstance(issues, list):
                raise RemoteError(
                    f"{self.site}{SEARCH_PATH[api]} answered without an 'issues' list; "
                    "check the Jira address and --api."
                )
            number += 1
            yield number, api, issues
            if not self._next_page(api, params, data, len(issues)):
                return
            data = None

    def _next_page(self, api: str, params: dict[str, Any], data: dict[str, Any], n: int) -> bool:
        """Move ``params`` to the next page; ``False`` when this was the last one."""
        if api == "cloud":
            token = data.get("nextPageToken")
            if data.get("isLast") is True or not isinstance(token, str) or not token:
                return False
            if token == params.get("nextPageToken"):
                raise RemoteError(f"{self.site} returned the same page token twice; try again.")
            params["nextPageToken"] = token
            return True
        start, total = params["startAt"] + n, data.get("total")
        if n == 0 or not isinstance(total, int) or start >= total:
            return False
        params["startAt"] = start
        return True

    def _convert(
        self, http: HttpClient, api: str, raw: list[Any], report: IngestReport
    ) -> tuple[list[Issue], list[Comment]]:
        """Issues and comments of one page; a bad issue becomes a rejection naming its key."""
        issues: list[Issue] = []
        comments: list[Comment] = []
        for obj in raw:
            report.seen += 1
            try:
                issue = jira_issue(obj, base_url=self.site)
            except RowError as exc:
                key = _obj(obj).get("key")
                label = key if isinstance(key, str) and key else report.seen
                where = f"{self.site}{SEARCH_PATH[api]}#{label}"
                report.rejected.append(Rejection(where=where, reason=str(exc)))
                continue
            issues.append(issue)
            if self.comments:
                comments.extend(self._comments(http, api, issue, report))
        return issues, comments

    def _comments(
        self, http: HttpClient, api: str, issue: Issue, report: IngestReport
    ) -> list[Comment]:
        """The embedded comments of ``issue``, plus the pages the search did not embed."""
        block = _obj(_obj(issue.raw.get("fields")).get("comment"))
        embedded = block.get("comments")
        raw = list(embedded) if isinstance(embedded, list) else []
        total = block.get("total")
        if isinstance(total, int) and total > len(raw):
            raw += self._more_comments(http, api, str(issue.key), len(raw), total)
        out = []
        for i, obj in enumerate(raw):
            try:
                out.append(jira_comment(obj, issue.repo, issue.number))
            except RowError as exc:
                where = f"{issue.url or issue.key}#comment-{_obj(obj).get('id') or i}"
                report.rejected.append(Rejection(where=where, reason=str(exc)))
        return out

    def _more_comments(
        self, http: HttpClient, api: str, key: str, start: int, total: int
    ) -> list[Any]:
        """Comments ``start`` … ``total`` of one issue from ``/issue/{key}/comment``."""
        path, out = COMMENT_PATH[api].format(key=key), []
        while start < total:
            params = {"startAt": start, "maxResults": self.page_size}
            data = _obj(http.get_json(path, params=params)[1])
            page = data.get("comments")
            if not isinstance(page, list) or not page:
                break
            out.extend(page)
            start += len(page)
            total = data["total"] if isinstance(data.get("total"), int) else total
        return out
