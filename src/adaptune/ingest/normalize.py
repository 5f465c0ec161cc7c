"""Pure conversions from tracker objects (GitHub REST, ``gh`` exports) to :class:`Issue` rows.

Each function raises :class:`RowError` with a message a user can act on when a required field
is missing or malformed; callers turn that into a counted rejection naming the line or URL.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from adaptune.types import Comment, Issue

MAX_BODY_CHARS = 1_000_000
"""Bodies longer than this keep their head and tail in the ``body`` column; ``raw`` keeps all."""

_REPO_FROM_API = re.compile(r"/repos/([^/]+/[^/]+?)/?$")
_REPO_FROM_HTML = re.compile(r"^https?://[^/]+/([^/]+/[^/]+)/(?:issues|pull)/(\d+)")


class RowError(ValueError):
    """One input object could not be read as an issue."""


def parse_time(value: Any, field: str, required: bool = True) -> datetime | None:
    """An ISO-8601 timestamp (``Z`` or an offset) as an aware UTC datetime."""
    if value is None or value == "":
        if required:
            raise RowError(f"missing field '{field}'")
        return None
    if not isinstance(value, str):
        raise RowError(f"field '{field}' is not a timestamp: {value!r:.40}")
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise RowError(f"field '{field}' is not an ISO timestamp: {value!r:.40}") from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def cap_body(body: Any, field: str = "body") -> str | None:
    """Validate a body and cut a giant one to head + tail, saying how much was cut."""
    if body is None:
        return None
    if not isinstance(body, str):
        raise RowError(f"field '{field}' is not text")
    if len(body) <= MAX_BODY_CHARS:
        return body
    head, tail = MAX_BODY_CHARS * 4 // 5, MAX_BODY_CHARS // 5
    cut = len(body) - head - tail
    return f"{body[:head]}\n\n[... {cut} characters cut at ingest ...]\n\n{body[-tail:]}"


def _number(obj: dict[str, Any]) -> int:
    value = obj.get("number")
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise RowError("missing field 'number'" if value is None else "field 'number' is bad")
    try:
        number = int(value)
    except ValueError:
        raise RowError(f"field 'number' is not an integer: {value!r:.40}") from None
    if number <= 0:
        raise RowError(f"field 'number' must be positive, got {number}")
    return number


def _title(obj: dict[str, Any]) -> str:
    title = obj.get("title")
    if not isinstance(title, str):
        raise RowError("missing field 'title'" if title is None else "field 'title' is not text")
    return title


def _labels(value: Any) -> tuple[str, ...]:
    out = []
    for item in value or []:
        name = item.get("name") if isinstance(item, dict) else item
        if isinstance(name, str) and name:
            out.append(name)
    return tuple(out)


def _login(value: Any) -> str | None:
    return value.get("login") if isinstance(value, dict) else None


def repo_of(obj: dict[str, Any]) -> str | None:
    """``owner/name`` from a REST object's ``repository_url`` or ``html_url``."""
    api = obj.get("repository_url")
    if isinstance(api, str) and (m := _REPO_FROM_API.search(api)):
        return m.group(1)
    html = obj.get("html_url") or obj.get("url")
    if isinstance(html, str) and (m := _REPO_FROM_HTML.match(html)):
        return m.group(1)
    return None


def github_issue(obj: Any, repo: str | None = None) -> Issue:
    """An issue or PR from a GitHub REST object (full, or the reduced shape of the samples)."""
    if not isinstance(obj, dict):
        raise RowError(f"expected a JSON object, got {type(obj).__name__}")
    number = _number(obj)
    repo = repo or repo_of(obj)
    if not repo:
        raise RowError("cannot tell the repository: no 'repository_url' or 'html_url'")
    state = obj.get("state")
    if state not in ("open", "closed"):
        raise RowError(f"field 'state' must be open or closed, got {state!r:.40}")
    created = parse_time(obj.get("created_at"), "created_at")
    closed = parse_time(obj.get("closed_at"), "closed_at", required=False)
    updated = parse_time(obj.get("updated_at"), "updated_at", required=False)
    pr = obj.get("pull_request")
    comments = obj.get("comments")
    return Issue(
        source="github",
        repo=repo,
        number=number,
        title=_title(obj),
        body=cap_body(obj.get("body")),
        state=state,
        created_at=created,  # type: ignore[arg-type]
        updated_at=updated or closed or created,  # type: ignore[arg-type]
        closed_at=closed,
        is_pull_request=isinstance(pr, dict),
        merged_at=parse_time(pr.get("merged_at"), "merged_at", False) if pr else None,
        state_reason=obj.get("state_reason") if isinstance(obj.get("state_reason"), str) else None,
        labels=_labels(obj.get("labels")),
        author=_login(obj.get("user")),
        author_association=obj.get("author_association"),
        closed_by=_login(obj.get("closed_by")),
        comments_count=comments if isinstance(comments, int) else 0,
        url=obj.get("html_url"),
        raw=obj,
    )


def github_comment(obj: Any, repo: str, issue_number: int) -> Comment:
    """A comment from GitHub's ``/issues/{n}/comments`` answer."""
    if not isinstance(obj, dict) or obj.get("id") is None:
        raise RowError("comment without an 'id'")
    created = parse_time(obj.get("created_at"), "created_at")
    return Comment(
        source="github",
        repo=repo,
        issue_number=issue_number,
        comment_id=str(obj["id"]),
        body=cap_body(obj.get("body")),
        created_at=created,  # type: ignore[arg-type]
        updated_at=parse_time(obj.get("updated_at"), "updated_at", False) or created,  # type: ignore[arg-type]
        author=_login(obj.get("user")),
        author_association=obj.get("author_association"),
        raw=obj,
    )
