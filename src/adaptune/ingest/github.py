"""GitHub REST ingest: the issues and pull requests of one repository, synced incrementally.

``GET /repos/{owner}/{repo}/issues`` sorted by ``updated`` ascending, starting at an explicit
``since`` or at the stored cursor (the newest ``updated_at`` already stored), page by page along
the ``Link`` header. Each page is committed together with the cursor it reaches, so an
interrupted sync resumes where it stopped and stores nothing twice. Only ``state="all"`` moves
the cursor (there is one per repo): a sync of closed issues says nothing about the open ones.

The first page is asked conditionally (``If-None-Match``): an unchanged repository answers 304,
which costs no rate limit. Retries, backoff and rate-limit waits are
:class:`~adaptune.ingest.http.HttpClient`'s job. With ``comments=True`` the comments of every
closed issue (not PR) that the sync stores or updates are fetched too, and committed with their
page.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
from sqlalchemy import select

from adaptune import __version__
from adaptune.errors import ConfigError, RemoteError
from adaptune.ingest.base import Progress, write_batch
from adaptune.ingest.http import HttpClient, RetryPolicy
from adaptune.ingest.normalize import RowError, github_comment, github_issue
from adaptune.store import Store, schema
from adaptune.store.sync import load_sync_state, save_sync_state
from adaptune.types import Comment, IngestReport, Issue, Rejection

__all__ = ["GitHubSource"]

SOURCE = "github"
PER_PAGE = 100
MAX_RESCANS = 3
"""Re-reads after rows changed mid-sync, before the sync ends (a later sync goes on)."""
STATES = ("open", "closed", "all")
USER_AGENT = f"adaptune/{__version__}"
_REPO = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
T = TypeVar("T")


def _quiet(_msg: str) -> None:
    return None


def _check_repo(repo: str) -> str:
    owner, _, name = repo.partition("/")
    if not _REPO.fullmatch(repo) or not owner.strip(".") or not name.strip("."):
        raise ConfigError(
            f"GitHub repository must be written owner/name (like vllm-project/vllm), got {repo!r}."
        )
    return repo


def _check_api_url(api_url: str) -> str:
    try:
        url = httpx.URL(api_url.strip())
    except httpx.InvalidURL:
        url = httpx.URL()
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(
            f"GitHub API URL must start with https:// (like https://api.github.com or "
            f"https://HOST/api/v3 for Enterprise), got {api_url!r:.100}."
        )
    if url.userinfo:
        raise ConfigError("Put the GitHub token in GITHUB_TOKEN or --token, not in the API URL.")
    return str(url.copy_with(query=None, fragment=None)).rstrip("/")


def _check_token(token: str | None) -> str | None:
    token = (token or "").strip()
    if token and (not token.isascii() or any(ch.isspace() for ch in token)):
        # The message must not echo the token: it may be a real one with a stray character.
        raise ConfigError("The GitHub token contains spaces or non-ASCII characters; check it.")
    return token or None


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _iso(dt: datetime) -> str:
    """GitHub's timestamp form; sub-seconds are dropped, which only asks for a little more."""
    return _utc(dt).strftime("%Y-%m-%dT%H:%M:%SZ")


def _convert(
    url: str, rows: list[Any], convert: Callable[[Any], T], key: str, rejected: list[Rejection]
) -> list[T]:
    """Convert each row; one that fails becomes a rejection named ``URL#KEY`` or ``URL#item-I``."""
    out: list[T] = []
    for index, obj in enumerate(rows):
        try:
            out.append(convert(obj))
        except RowError as exc:
            ident = obj.get(key) if isinstance(obj, dict) else None
            tag = f"{ident!s:.40}" if isinstance(ident, int | str) else f"item-{index}"
            rejected.append(Rejection(where=f"{url}#{tag}", reason=str(exc)))
    return out


def _stored_versions(store: Store, repo: str, numbers: list[int]) -> dict[int, datetime]:
    """``updated_at`` of the stored versions of some issues of ``repo``."""
    if not numbers:
        return {}
    t = schema.issues
    stmt = select(t.c.number, t.c.updated_at).where(
        t.c.source == SOURCE, t.c.repo == repo, t.c.number.in_(numbers)
    )
    with store.engine.connect() as conn:
        return {row.number: row.updated_at for row in conn.execute(stmt)}


class GitHubSource:
    """The issues and pull requests of one GitHub (or GitHub Enterprise) repository."""

    def __init__(
        self,
        repo: str,
        api_url: str = "https://api.github.com",
        token: str | None = None,
        since: datetime | None = None,
        state: str = "all",
        comments: bool = False,
        policy: RetryPolicy | None = None,
        progress: Progress | None = None,
    ) -> None:
        """Check the settings; raise :class:`ConfigError` when one is wrong.

        ``since`` (naive means UTC) overrides the stored cursor; ``state`` is ``open``,
        ``closed`` or ``all``; ``comments`` also fetches the comments of closed issues.
        """
        self.repo = _check_repo(repo)
        self.api_url = _check_api_url(api_url)
        if state not in STATES:
            raise ConfigError(f"Issue state must be one of {', '.join(STATES)}, got {state!r}.")
        self.state = state
        self.since = _utc(since) if since is not None else None
        self.comments = comments
        self.policy = policy or RetryPolicy()
        self.progress: Progress = progress or _quiet
        self._token = _check_token(token)

    def __repr__(self) -> str:
        return f"GitHubSource({self.repo!r}, api_url={self.api_url!r})"

    def issues_url(self, since: datetime | None) -> str:
        """The first page's URL, query included (also the key of its stored ETag)."""
        params = {
            "state": self.state,
            "per_page": str(PER_PAGE),
            "sort": "updated",
            "direction": "asc",
        }
        if since is not None:
            params["since"] = _iso(since)
        return str(httpx.URL(f"{self.api_url}/repos/{self.repo}/issues", params=params))

    def comments_url(self, number: int) -> str:
        """The first page of the comments of issue ``number``."""
        return f"{self.api_url}/repos/{self.repo}/issues/{number}/comments?per_page={PER_PAGE}"

    def _headers(self) -> dict[str, str]:
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": USER_AGENT,
        }
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def ingest(self, store: Store, domain: str | None = None) -> IngestReport:
        """Fetch what changed since the last sync and upsert it into ``store``.

        Raises :class:`RemoteError` (naming the URL) when GitHub keeps failing; the pages
        stored before the failure stay, and running the sync again continues from there.
        """
        with HttpClient(
            self.api_url, headers=self._headers(), policy=self.policy, progress=self.progress
        ) as http:
            return _Sync(self, http, store, domain).run()


class _Sync:
    """One ingest run of a :class:`GitHubSource`: its client, report and sync state."""

    def __init__(
        self, src: GitHubSource, http: HttpClient, store: Store, domain: str | None
    ) -> None:
        self.src = src
        self.http = http
        self.store = store
        self.domain = domain
        self.report = IngestReport(source=f"{SOURCE}:{src.repo}")
        with store.begin() as conn:
            self.state = load_sync_state(conn, SOURCE, src.repo)
        self.base = httpx.URL(src.api_url)
        self.pages = 0
        self.newest: datetime | None = None
        self.visited: set[str] = set()
        self.versions: dict[int, datetime] = {}
        self.rescan_from: datetime | None = None

    def run(self) -> IngestReport:
        """Sync every page, then mark the repo synced; add a resume hint to a failure."""
        first = self.src.issues_url(self.src.since or self.state.cursor)
        try:
            self._sync(first)
        except RemoteError as exc:
            if not self.pages:
                raise
            raise RemoteError(
                f"{exc} The {self.pages} page(s) before it are stored; "
                "run the sync again to continue from there."
            ) from exc
        return self.report

    def _sync(self, first: str) -> None:
        etag = self.state.etags.get(first)
        resp, data = self._get(first, {"If-None-Match": etag} if etag else None)
        if resp.status_code == 304:
            self.report.not_modified = True
            self.src.progress(f"{self.src.repo}: not modified since the last sync")
            self._finish(first, etag)
            return
        # Only a one-page answer's ETag vouches for the whole result: with several pages, a
        # row that changes on a later page moves to the end and leaves page 1 as it was.
        new_etag = None if "next" in resp.links else resp.headers.get("etag")
        self._walk(resp, data)
        passes = 0
        while self.rescan_from is not None and passes < MAX_RESCANS:
            since, self.rescan_from = self.rescan_from, None
            passes += 1
            self.src.progress(
                f"{self.src.repo}: rows changed during the sync; re-reading from {_iso(since)} "
                "so that none is skipped"
            )
            if self.src.state == "all":
                self.state.cursor = since  # until the re-read is done, resume from here
                self._save()
            self.newest, self.visited = None, set()
            resp, data = self._get(self.src.issues_url(since))
            self._walk(resp, data)
        self._finish(first, new_etag if passes == 0 else None)

    def _walk(self, resp: httpx.Response, data: list[Any]) -> None:
        """Store this page and every page after it along ``Link: rel="next"``."""
        while True:
            self._store_page(str(resp.url), data)
            url = self._next(resp)
            if url is None:
                return
            resp, data = self._get(url)

    def _get(self, url: str, headers: dict[str, str] | None = None) -> tuple[httpx.Response, Any]:
        self.visited.add(url)
        resp, data = self.http.get_json(url, headers=headers)
        if resp.status_code == 304 and headers:
            return resp, None
        if resp.status_code == 304 or not isinstance(data, list):
            raise RemoteError(
                f"{url} answered HTTP {resp.status_code} with a {type(data).__name__}, not a list; "
                f"check the API URL ({self.src.api_url})."
            )
        return resp, data

    def _next(self, resp: httpx.Response) -> str | None:
        """The ``Link: rel="next"`` URL, refused when it leaves the API host or loops."""
        link = resp.links.get("next", {}).get("url")
        if not link:
            return None
        url = resp.url.join(link)
        if (url.scheme, url.host, url.port) != (self.base.scheme, self.base.host, self.base.port):
            raise RemoteError(
                f"{resp.url} links its next page to another host ({url.host}); "
                "refusing to send the token there."
            )
        if str(url) in self.visited:
            raise RemoteError(f"{resp.url} links back to a page already read ({url}).")
        return str(url)

    def _store_page(self, url: str, data: list[Any]) -> None:
        """Commit one page (with its comments), then advance and save the cursor."""
        self.pages += 1
        self.report.seen += len(data)
        repo = self.src.repo
        issues = _convert(
            url, data, lambda obj: github_issue(obj, repo), "number", self.report.rejected
        )
        comments = self._comments(issues) if self.src.comments else []
        write_batch(self.store, self.report, issues, comments, self.domain)
        self._note_moves(issues)
        times = [i.updated_at for i in issues] + ([self.newest] if self.newest else [])
        self.newest = max(times, default=None)
        # Only a sync of every state may move the shared cursor: after `--state closed`, open
        # issues updated before its newest row would otherwise never be asked for again.
        if self.src.state == "all" and self.newest is not None:
            cursor = self.state.cursor
            self.state.cursor = self.newest if cursor is None else max(cursor, self.newest)
        self._save()
        newest = _iso(self.newest) if self.newest else "none"
        extra = f", {len(comments)} comments" if self.src.comments else ""
        self.src.progress(f"page {self.pages}: {len(data)} issues{extra}, cursor {newest}")

    def _note_moves(self, issues: list[Issue]) -> None:
        """Spot rows edited during this sync: they moved to the end and shifted the offsets.

        When a row already read comes back newer, the rows behind its old place moved up one
        page, and one of them may have been skipped; those rows are all at or after the old
        version's ``updated_at``, so the sync re-reads from there once it reaches the end.
        """
        for issue in issues:
            old = self.versions.get(issue.number)
            if old is not None and issue.updated_at > old:
                start = self.rescan_from
                self.rescan_from = old if start is None else min(start, old)
            self.versions[issue.number] = issue.updated_at

    def _comments(self, issues: list[Issue]) -> list[Comment]:
        """Comments of the closed issues on a page that are new or newer than stored."""
        closed = {
            i.number: i
            for i in sorted(issues, key=lambda i: i.updated_at)
            if i.state == "closed" and not i.is_pull_request and i.raw.get("comments") != 0
        }
        stored = _stored_versions(self.store, self.src.repo, list(closed))
        out: list[Comment] = []
        for number, issue in closed.items():
            old = stored.get(number)
            if old is None or issue.updated_at > old:
                out.extend(self._issue_comments(number))
        return out

    def _issue_comments(self, number: int) -> list[Comment]:
        repo = self.src.repo
        out: list[Comment] = []
        url: str | None = self.src.comments_url(number)
        while url is not None:
            resp, data = self._get(url)
            out += _convert(
                url, data, lambda obj: github_comment(obj, repo, number), "id", self.report.rejected
            )
            url = self._next(resp)
        return out

    def _finish(self, first: str, etag: str | None) -> None:
        """Keep only this sync's first-page ETag and record when the sync completed."""
        self.state.etags = {first: etag} if etag else {}
        self.state.last_synced = datetime.now(UTC)
        self._save()

    def _save(self) -> None:
        with self.store.begin() as conn:
            save_sync_state(conn, self.state)
