"""``gh issue list --json number,title,body,labels,state,createdAt,closedAt,author,comments,url``.

The GitHub CLI's JSON differs from the REST API's: camelCase times, upper-case states, nested
comment objects with node ids. This module converts it to the same :class:`Issue` rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adaptune.ingest.base import Progress
from adaptune.ingest.files import ObjectFileSource
from adaptune.ingest.normalize import (
    RowError,
    cap_body,
    github_issue,
    parse_time,
    repo_of,
)
from adaptune.types import Comment, Issue


def _login(value: Any) -> str | None:
    return value.get("login") if isinstance(value, dict) else None


def gh_comment(obj: Any, repo: str, number: int) -> Comment:
    """One element of the export's ``comments`` list."""
    if not isinstance(obj, dict):
        raise RowError("a comment is not a JSON object")
    cid = obj.get("id") or (obj.get("url") or "").rpartition("#")[2]
    if not cid:
        raise RowError("a comment has no 'id' or 'url'")
    created = parse_time(obj.get("createdAt"), "comments[].createdAt")
    return Comment(
        source="github",
        repo=repo,
        issue_number=number,
        comment_id=str(cid),
        body=cap_body(obj.get("body"), "comments[].body"),
        created_at=created,  # type: ignore[arg-type]
        updated_at=parse_time(obj.get("updatedAt"), "updatedAt", False) or created,  # type: ignore[arg-type]
        author=_login(obj.get("author")),
        author_association=obj.get("authorAssociation"),
        raw=obj,
    )


def gh_issue(obj: Any) -> tuple[Issue, list[Comment]]:
    """An issue and its comments from one element of a ``gh issue list --json`` array."""
    if not isinstance(obj, dict):
        raise RowError(f"expected a JSON object, got {type(obj).__name__}")
    repo = repo_of({"html_url": obj.get("url")})
    if repo is None:
        raise RowError("missing or unrecognised field 'url' (needs .../OWNER/REPO/issues/N)")
    raw_comments = obj.get("comments")
    raw_comments = raw_comments if isinstance(raw_comments, list) else []
    state = str(obj.get("state") or "").lower()
    rest = {
        "number": obj.get("number"),
        "title": obj.get("title"),
        "body": obj.get("body"),
        "state": "closed" if state in ("closed", "merged") else state,
        "created_at": obj.get("createdAt"),
        "closed_at": obj.get("closedAt") or None,
        "updated_at": obj.get("updatedAt") or None,
        "labels": obj.get("labels") or [],
        "user": obj.get("author"),
        "state_reason": (obj.get("stateReason") or "").lower() or None,
        "html_url": obj.get("url"),
        "comments": len(raw_comments),
    }
    issue = github_issue(rest, repo=repo)
    comments = [gh_comment(c, repo, issue.number) for c in raw_comments]
    if rest["updated_at"] is None and comments:
        # Without updatedAt in the export, the newest comment is the best "last changed" we have.
        newest = max([issue.updated_at, *(c.updated_at for c in comments)])
        issue = _with(issue, updated_at=newest)
    return _with(issue, raw=obj), comments


def _with(issue: Issue, **changes: Any) -> Issue:
    from dataclasses import replace

    return replace(issue, **changes)


def gh_export_source(
    path: str | Path, strict: bool = False, progress: Progress | None = None
) -> ObjectFileSource:
    """A JSON file written by ``gh issue list --json ...`` (array or JSON lines)."""
    return ObjectFileSource(Path(path), gh_issue, "gh-export", strict, progress)
