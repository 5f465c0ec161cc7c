"""Pure conversions from tracker objects (GitHub REST, ``gh`` exports) to :class:`Issue` rows.

Each function raises :class:`RowError` with a message a user can act on when a required field
is missing or malformed; callers turn that into a counted rejection naming the line or URL.
Numbers are checked against what the store holds (:func:`integer`), and JSON is read with
:func:`load_json`, which keeps ``NaN``, ``Infinity`` and numbers no column can hold from passing
as values, so that a hostile payload is a rejection naming the field, never a crash.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any

from adaptune.store.domains import repo_problem
from adaptune.types import Comment, Issue

MAX_BODY_CHARS = 1_000_000
"""Bodies longer than this keep their head and tail in the ``body`` column; ``raw`` keeps all."""

_REPO_FROM_API = re.compile(r"/repos/([^/]+/[^/]+?)/?$")
_REPO_FROM_HTML = re.compile(r"^https?://[^/]+/([^/]+/[^/]+)/(?:issues|pull)/(\d+)")


MAX_INT = 2**31 - 1
"""The largest number the store's ``INTEGER`` columns hold on every backend (PostgreSQL's are
32-bit; SQLite's 64-bit): issue numbers and comment counts beyond it are refused."""
MAX_ID = 2**63 - 1
"""The largest object id GitHub or Jira hands out (64-bit); ids are stored as text."""
MAX_ID_CHARS = 100
"""Longest id the ``comments.comment_id`` column holds."""


class RowError(ValueError):
    """One input object could not be read as an issue.

    ``field`` names the field at fault when there is one (``number``, ``fields.comment.total``);
    ``problem`` says what is wrong with it, so a caller can name the field in its own terms
    (``issue.number: ...``); ``str()`` is the whole message.
    """

    def __init__(self, message: str, field: str | None = None, problem: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.problem = problem or message


def bad_field(field: str, problem: str) -> RowError:
    """The :class:`RowError` for field ``field``: ``field 'number' <problem>``."""
    return RowError(f"field '{field}' {problem}", field, problem)


class NotANumber:
    """Stands in for a JSON token :func:`load_json` refuses to turn into a number: ``NaN``,
    ``Infinity``, a float beyond the float range or an integer of thousands of digits."""

    __slots__ = ("token",)

    def __init__(self, token: str) -> None:
        self.token = token

    def __repr__(self) -> str:
        return self.token[:40]


def load_json(text: str | bytes) -> tuple[Any, bool]:
    """``json.loads`` that never yields ``NaN``, an infinity or an integer it cannot convert.

    Python's ``json`` accepts ``NaN`` and ``Infinity`` (not JSON), turns ``1e400`` into
    ``inf`` and raises a bare ``ValueError`` on integers of more than 4,300 digits; here each
    of these becomes a :class:`NotANumber`. Returns the value and whether any was found; then
    :func:`check_numbers` names where. Raises ``json.JSONDecodeError`` and ``RecursionError``
    as ``json.loads`` does.
    """
    found = False

    def refuse(token: str) -> NotANumber:
        nonlocal found
        found = True
        return NotANumber(token)

    def to_float(token: str) -> float | NotANumber:
        value = float(token)
        return value if math.isfinite(value) else refuse(token)

    def to_int(token: str) -> int | NotANumber:
        try:
            return int(token)
        except ValueError:  # more digits than int() converts
            return refuse(token)

    value = json.loads(text, parse_constant=refuse, parse_float=to_float, parse_int=to_int)
    return value, found


def check_numbers(value: Any) -> None:
    """Raise :class:`RowError` naming the first :class:`NotANumber` in ``value`` (dotted path)."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:  # iterative: the JSON may be as deep as json.loads allows
        node, path = stack.pop()
        if isinstance(node, NotANumber):
            field = path or "value"
            raise bad_field(field, f"is {node!r}, which is not a number JSON allows")
        if isinstance(node, dict):
            stack.extend((v, f"{path}.{k}" if path else str(k)) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(node))


def integer(value: Any, field: str, minimum: int = 1, maximum: int = MAX_INT) -> int:
    """``value`` as an integer from ``minimum`` to ``maximum``, else a :class:`RowError` naming
    ``field``: floats (``1e308``), booleans and out-of-range numbers are refused, digits in a
    string are accepted (some exports quote numbers)."""
    if value is None:
        raise RowError(f"missing field '{field}'", field, "is missing")
    if isinstance(value, str) and value.strip().isdecimal() and len(value) <= 30:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_field(field, f"is not an integer: {value!r:.40}")
    if not minimum <= value <= maximum:
        digits = str(value)
        shown = digits if len(digits) <= 40 else f"{digits[:20]}... ({len(digits)} digits)"
        raise bad_field(field, f"must be from {minimum} to {maximum}, got {shown}")
    return value


def object_id(value: Any, field: str = "id") -> str:
    """An object id as text: a positive integer (at most :data:`MAX_ID`) or a non-empty string
    of at most :data:`MAX_ID_CHARS` characters."""
    if isinstance(value, str):
        if not value or len(value) > MAX_ID_CHARS:
            problem = "is empty" if not value else f"is longer than {MAX_ID_CHARS} characters"
            raise bad_field(field, problem)
        return value
    return str(integer(value, field, 1, MAX_ID))


def text_or_none(value: Any) -> str | None:
    """``value`` when it is a string, else ``None`` (optional text fields of any type)."""
    return value if isinstance(value, str) else None


def parse_time(value: Any, field: str, required: bool = True) -> datetime | None:
    """An ISO-8601 timestamp (``Z`` or an offset) as an aware UTC datetime."""
    if value is None or value == "":
        if required:
            raise RowError(f"missing field '{field}'", field, "is missing")
        return None
    if not isinstance(value, str):
        raise bad_field(field, f"is not a timestamp: {value!r:.40}")
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    except ValueError:
        raise bad_field(field, f"is not an ISO timestamp: {value!r:.40}") from None
    except OverflowError:  # year 1 at +14:00 is before the first representable instant
        raise bad_field(field, f"is out of range: {value!r:.40}") from None


def cap_body(body: Any, field: str = "body") -> str | None:
    """Validate a body and cut a giant one to head + tail, saying how much was cut."""
    if body is None:
        return None
    if not isinstance(body, str):
        raise bad_field(field, "is not text")
    if len(body) <= MAX_BODY_CHARS:
        return body
    head, tail = MAX_BODY_CHARS * 4 // 5, MAX_BODY_CHARS // 5
    cut = len(body) - head - tail
    return f"{body[:head]}\n\n[... {cut} characters cut at ingest ...]\n\n{body[-tail:]}"


def _comments_count(value: Any) -> int:
    return 0 if value is None else integer(value, "comments", minimum=0)


def _title(obj: dict[str, Any]) -> str:
    title = obj.get("title")
    if not isinstance(title, str):
        if title is None:
            raise RowError("missing field 'title'", "title", "is missing")
        raise bad_field("title", "is not text")
    return title


def _labels(value: Any) -> tuple[str, ...]:
    """Label names from a list of label objects or names; anything else is no labels (a
    string is not a list of one-letter labels, a number is not iterable)."""
    if not isinstance(value, list):
        return ()
    out = []
    for item in value:
        name = item.get("name") if isinstance(item, dict) else item
        if isinstance(name, str) and name:
            out.append(name)
    return tuple(out)


def _login(value: Any) -> str | None:
    return text_or_none(value.get("login")) if isinstance(value, dict) else None


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
    number = integer(obj.get("number"), "number")
    repo = repo or repo_of(obj)
    if not repo:
        raise RowError("cannot tell the repository: no 'repository_url' or 'html_url'")
    if (problem := repo_problem("github", repo)) is not None:
        raise RowError(f"cannot tell the repository: {problem}")
    state = obj.get("state")
    if state not in ("open", "closed"):
        raise bad_field("state", f"must be open or closed, got {state!r:.40}")
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
        state_reason=text_or_none(obj.get("state_reason")),
        labels=_labels(obj.get("labels")),
        author=_login(obj.get("user")),
        author_association=text_or_none(obj.get("author_association")),
        closed_by=_login(obj.get("closed_by")),
        comments_count=_comments_count(comments),
        url=text_or_none(obj.get("html_url")),
        raw=obj,
    )


def github_comment(obj: Any, repo: str, issue_number: int) -> Comment:
    """A comment from GitHub's ``/issues/{n}/comments`` answer."""
    if not isinstance(obj, dict) or obj.get("id") is None:
        raise RowError("comment without an 'id'", "id", "is missing")
    comment_id = object_id(obj["id"])
    created = parse_time(obj.get("created_at"), "created_at")
    return Comment(
        source="github",
        repo=repo,
        issue_number=issue_number,
        comment_id=comment_id,
        body=cap_body(obj.get("body")),
        created_at=created,  # type: ignore[arg-type]
        updated_at=parse_time(obj.get("updated_at"), "updated_at", False) or created,  # type: ignore[arg-type]
        author=_login(obj.get("user")),
        author_association=text_or_none(obj.get("author_association")),
        raw=obj,
    )
