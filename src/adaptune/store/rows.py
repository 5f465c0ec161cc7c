"""Conversions between the shared value types and database rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row

from adaptune.types import Comment, Issue


def _clean(text: str | None) -> str | None:
    # PostgreSQL refuses NUL in text columns; nothing real is lost by dropping it.
    return text.replace("\x00", "") if text and "\x00" in text else text


def issue_to_row(issue: Issue, now: datetime | None = None) -> dict[str, Any]:
    """The column values for ``issue``."""
    return {
        "source": issue.source,
        "repo": issue.repo,
        "number": issue.number,
        "key": issue.key,
        "title": _clean(issue.title) or "",
        "body": _clean(issue.body),
        "state": issue.state,
        "state_reason": issue.state_reason,
        "is_pull_request": issue.is_pull_request,
        "merged_at": issue.merged_at,
        "labels": json.dumps(list(issue.labels), ensure_ascii=False),
        "author": issue.author,
        "author_association": issue.author_association,
        "closed_by": issue.closed_by,
        "comments_count": issue.comments_count,
        "url": issue.url,
        "issue_type": issue.issue_type,
        "created_at": issue.created_at,
        "updated_at": issue.updated_at,
        "closed_at": issue.closed_at,
        "raw": json.dumps(issue.raw, ensure_ascii=False, separators=(",", ":")),
        "ingested_at": now or datetime.now(UTC),
    }


def row_to_issue(row: Row, with_raw: bool = False) -> Issue:
    """An :class:`Issue` from a result row (``raw`` parsed only when asked for)."""
    m = row._mapping
    return Issue(
        source=m["source"],
        repo=m["repo"],
        number=m["number"],
        key=m["key"],
        title=m["title"],
        body=m["body"],
        state=m["state"],
        state_reason=m["state_reason"],
        is_pull_request=bool(m["is_pull_request"]),
        merged_at=m["merged_at"],
        labels=tuple(json.loads(m["labels"] or "[]")),
        author=m["author"],
        author_association=m["author_association"],
        closed_by=m["closed_by"],
        comments_count=m["comments_count"],
        url=m["url"],
        issue_type=m["issue_type"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        closed_at=m["closed_at"],
        raw=json.loads(m["raw"]) if with_raw and "raw" in m else {},
    )


def comment_to_row(c: Comment) -> dict[str, Any]:
    """The column values for ``c``."""
    return {
        "source": c.source,
        "repo": c.repo,
        "issue_number": c.issue_number,
        "comment_id": c.comment_id,
        "author": c.author,
        "author_association": c.author_association,
        "body": _clean(c.body),
        "created_at": c.created_at,
        "updated_at": c.updated_at,
        "raw": json.dumps(c.raw, ensure_ascii=False, separators=(",", ":")),
    }


def row_to_comment(row: Row) -> Comment:
    """A :class:`Comment` from a result row."""
    m = row._mapping
    return Comment(
        source=m["source"],
        repo=m["repo"],
        issue_number=m["issue_number"],
        comment_id=m["comment_id"],
        author=m["author"],
        author_association=m["author_association"],
        body=m["body"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )
