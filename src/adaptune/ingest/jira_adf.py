"""Pure conversions of Jira's JSON: ADF → plain text, issue and comment objects → rows.

Jira Cloud's REST API v3 returns rich text as an ADF tree (``{"type": "doc", "content": [...]}``);
Server / Data Center's v2 returns a plain string. The text produced here reads like the Markdown
of GitHub issues, so both sources look alike to the dataset stage: blocks are separated by a blank
line, headings start with ``#``, list items with ``- `` (or ``1. ``), code blocks are fenced with
three backticks, quotes start with ``>``, tables come out one row per line with cells joined by
`` | ``. Mentions, emoji, dates, status lozenges and cards become their text; media is dropped.

The input is whatever a server sent, so :func:`adf_to_text` never raises: unknown nodes give the
text they contain, values of the wrong type are skipped and very deep nesting is cut off.
:func:`jira_issue` and :func:`jira_comment` raise :class:`RowError` naming the field at fault.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from adaptune.ingest.normalize import (
    MAX_INT,
    RowError,
    bad_field,
    cap_body,
    integer,
    object_id,
    parse_time,
)
from adaptune.types import Comment, Issue

Node = dict[str, Any]

MAX_DEPTH = 64
"""Nesting deeper than this is ignored (real documents stay far below; garbage may not)."""

_SKIPPED = {"media", "mediaSingle", "mediaGroup", "mediaInline", "placeholder", "extension"}
_LISTS = {"bulletList", "orderedList", "taskList", "decisionList"}
_KEY = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)-(\d+)$")


def adf_to_text(node: Any) -> str:
    """Plain text of an ADF document (or of any ADF node); ``""`` for empty or odd input.

    A string is returned unchanged, so a v2 (Server) description can go through here as well.
    """
    if isinstance(node, str):
        return node
    if isinstance(node, list):
        node = {"type": "doc", "content": node}
    if not isinstance(node, dict):
        return ""
    return _block(node, 0).strip("\n")


def _kids(node: Node) -> list[Node]:
    content = node.get("content")
    return [c for c in content if isinstance(c, dict)] if isinstance(content, list) else []


def _attr(node: Node, name: str) -> Any:
    attrs = node.get("attrs")
    return attrs.get(name) if isinstance(attrs, dict) else None


def _sattr(node: Node, name: str) -> str:
    value = _attr(node, name)
    return value if isinstance(value, str) else ""


def _iattr(node: Node, name: str, default: int) -> int:
    value = _attr(node, name)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _blocks(nodes: list[Node], depth: int, sep: str = "\n\n") -> str:
    parts = (_block(n, depth + 1) for n in nodes)
    return sep.join(p for p in parts if p.strip())


def _block(node: Node, depth: int) -> str:
    """One block node as text; an inline node found at block level is rendered inline."""
    kind = node.get("type")
    if depth > MAX_DEPTH or kind in _SKIPPED:
        return ""
    render = _BLOCK_RENDERERS.get(kind) if isinstance(kind, str) else None
    if render is not None:
        return render(node, depth)
    if any(k.get("type") in _BLOCK_RENDERERS for k in _kids(node)):
        return _blocks(_kids(node), depth)
    return _one_inline(node, depth)


def _heading(node: Node, depth: int) -> str:
    level = min(max(_iattr(node, "level", 1), 1), 6)
    text = _inline(_kids(node), depth)
    return f"{'#' * level} {text}" if text else ""


def _code(node: Node, depth: int) -> str:
    return f"```{_sattr(node, 'language')}\n{_inline(_kids(node), depth)}\n```"


def _quote(node: Node, depth: int) -> str:
    inner = _blocks(_kids(node), depth)
    return "\n".join(f"> {line}" if line else ">" for line in inner.split("\n"))


def _expand(node: Node, depth: int) -> str:
    title = _sattr(node, "title")
    body = _blocks(_kids(node), depth)
    return f"{title}\n\n{body}" if title and body else title or body


def _list(node: Node, depth: int) -> str:
    """Bullet, ordered, task and decision lists; an item's later lines are indented under it."""
    kind = node.get("type")
    number = _iattr(node, "order", 1)
    lines = []
    for item in _kids(node):
        if kind == "orderedList":
            marker, number = f"{number}. ", number + 1
        elif item.get("type") == "taskItem":
            marker = "- [x] " if _sattr(item, "state") == "DONE" else "- [ ] "
        else:
            marker = "- "
        if item.get("type") in ("taskItem", "decisionItem"):
            body = _inline(_kids(item), depth)
        else:
            body = _blocks(_kids(item), depth, sep="\n")
        lines.append(marker + body.replace("\n", "\n" + " " * len(marker)))
    return "\n".join(lines)


def _table(node: Node, depth: int) -> str:
    """One line per row, cells (header or data) joined by `` | ``."""
    rows = []
    for row in _kids(node):
        cells = [" ".join(_blocks(_kids(cell), depth + 1).split()) for cell in _kids(row)]
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)


def _inline(nodes: list[Node], depth: int) -> str:
    """Inline nodes (text, mentions, emoji, breaks, cards …) concatenated."""
    if depth > MAX_DEPTH:
        return ""
    return "".join(_one_inline(n, depth) for n in nodes)


def _one_inline(node: Node, depth: int) -> str:
    kind = node.get("type")
    if kind == "text":
        return _marked(node)
    if kind == "hardBreak":
        return "\n"
    if kind == "mention":
        name = _sattr(node, "text") or _sattr(node, "id")
        return name if not name or name.startswith("@") else f"@{name}"
    if kind == "emoji":
        return _sattr(node, "text") or _sattr(node, "shortName")
    if kind in ("inlineCard", "blockCard", "embedCard"):
        return _sattr(node, "url")
    if kind == "status":
        return _sattr(node, "text")
    if kind == "date":
        return _date(_attr(node, "timestamp"))
    if kind in _SKIPPED:
        return ""
    if isinstance(kind, str) and kind in _BLOCK_RENDERERS:
        return _block(node, depth + 1)
    return _inline(_kids(node), depth + 1)


def _marked(node: Node) -> str:
    """A text node's text: a link keeps its text (or its address when it has none)."""
    text = node.get("text") if isinstance(node.get("text"), str) else ""
    marks = node.get("marks") if isinstance(node.get("marks"), list) else []
    kinds = {m.get("type"): m for m in marks if isinstance(m, dict)}
    if not text and "link" in kinds:
        text = _sattr(kinds["link"], "href")
    if text and "code" in kinds:
        return f"`{text}`"
    return text


def _date(timestamp: Any) -> str:
    """ADF dates are milliseconds since the epoch, as a string."""
    try:
        return datetime.fromtimestamp(int(timestamp) / 1000, UTC).date().isoformat()
    except (TypeError, ValueError, OverflowError, OSError):
        return timestamp if isinstance(timestamp, str) else ""


def _container(node: Node, depth: int) -> str:
    return _blocks(_kids(node), depth)


def _card(node: Node, _depth: int) -> str:
    return _sattr(node, "url")


_BLOCK_RENDERERS: dict[str, Callable[[Node, int], str]] = {
    "doc": _container,
    "panel": _container,
    "layoutSection": _container,
    "layoutColumn": _container,
    "bodiedExtension": _container,
    "extensionFrame": _container,
    "multiBodiedExtension": _container,
    "paragraph": lambda node, depth: _inline(_kids(node), depth),
    "heading": _heading,
    "codeBlock": _code,
    "blockquote": _quote,
    "rule": lambda _node, _depth: "---",
    "table": _table,
    "expand": _expand,
    "nestedExpand": _expand,
    "blockCard": _card,
    "embedCard": _card,
    **dict.fromkeys(_LISTS, _list),
}


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _seq(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _name(value: Any, field: str = "name") -> str | None:
    name = _obj(value).get(field)
    return name if isinstance(name, str) and name else None


def _rich_text(value: Any, field: str) -> str | None:
    """A v3 ADF document or a v2 string, as capped plain text."""
    if value is None:
        return None
    if isinstance(value, dict | list):
        return cap_body(adf_to_text(value), field)
    return cap_body(value, field)


def _split_key(obj: dict[str, Any]) -> tuple[str, str, int]:
    """``(key, project, number)`` of an issue key such as ``PROJ-7``; the number must fit the
    store's ``number`` column (it is refused naming ``key`` otherwise)."""
    key = obj.get("key")
    if key is None:
        raise RowError("missing field 'key'", "key", "is missing")
    if not isinstance(key, str) or not (m := _KEY.match(key)):
        problem = f"is not an issue key such as PROJ-7: {key!r:.40}"
        raise RowError(f"bad issue key {key!r:.40}", "key", problem)
    digits = m.group(2)
    if len(digits) > len(str(MAX_INT)) or not 1 <= int(digits) <= MAX_INT:
        raise bad_field("key", f"has a number outside 1 to {MAX_INT}: {key!r:.40}")
    return key, m.group(1).upper(), int(digits)


def _state(fields: dict[str, Any]) -> str:
    category = _obj(_obj(fields.get("status")).get("statusCategory")).get("key")
    done = category == "done" or fields.get("resolution") or fields.get("resolutiondate")
    return "closed" if done else "open"


def _labels(fields: dict[str, Any]) -> tuple[str, ...]:
    labels = [x for x in _seq(fields.get("labels")) if isinstance(x, str) and x]
    components = [_name(c) for c in _seq(fields.get("components"))]
    return tuple(labels + [c for c in components if c])


def _base_of(obj: dict[str, Any]) -> str | None:
    """The site address from an issue's ``self`` link (``https://x.atlassian.net``)."""
    link = obj.get("self")
    if isinstance(link, str) and "/rest/api/" in link:
        return link.split("/rest/api/", 1)[0]
    return None


def jira_issue(obj: Any, project: str | None = None, base_url: str | None = None) -> Issue:
    """An :class:`Issue` from a Jira issue object (v3 with ADF, or v2 with strings)."""
    if not isinstance(obj, dict):
        raise RowError(f"expected a JSON object, got {type(obj).__name__}")
    key, prefix, number = _split_key(obj)
    fields = obj.get("fields")
    if not isinstance(fields, dict):
        raise RowError("missing field 'fields' (the search must name the fields it wants)")
    title = fields.get("summary")
    if not isinstance(title, str):
        raise RowError("missing field 'summary'" if title is None else "'summary' is not text")
    created = parse_time(fields.get("created"), "created")
    closed = parse_time(fields.get("resolutiondate"), "resolutiondate", required=False)
    updated = parse_time(fields.get("updated"), "updated", required=False)
    comments = _obj(fields.get("comment"))
    total = comments.get("total")
    if total is not None:
        total = integer(total, "fields.comment.total", minimum=0)
    base = (base_url or _base_of(obj) or "").rstrip("/")
    return Issue(
        source="jira",
        repo=project or _name(fields.get("project"), "key") or prefix,
        number=number,
        key=key,
        title=title,
        body=_rich_text(fields.get("description"), "description"),
        state=_state(fields),
        created_at=created,  # type: ignore[arg-type]
        updated_at=updated or closed or created,  # type: ignore[arg-type]
        closed_at=closed,
        state_reason=_name(fields.get("resolution")),
        labels=_labels(fields),
        author=_name(fields.get("reporter"), "displayName"),
        comments_count=len(_seq(comments.get("comments"))) if total is None else total,
        url=f"{base}/browse/{key}" if base else None,
        issue_type=_name(fields.get("issuetype")),
        raw=obj,
    )


def jira_comment(obj: Any, project: str, issue_number: int) -> Comment:
    """A :class:`Comment` from a Jira comment object (``body`` ADF on v3, a string on v2)."""
    if not isinstance(obj, dict) or obj.get("id") in (None, ""):
        raise RowError("comment without an 'id'", "id", "is missing")
    comment_id = object_id(obj["id"])
    created = parse_time(obj.get("created"), "created")
    updated = parse_time(obj.get("updated"), "updated", required=False)
    return Comment(
        source="jira",
        repo=project,
        issue_number=issue_number,
        comment_id=comment_id,
        body=_rich_text(obj.get("body"), "body"),
        created_at=created,  # type: ignore[arg-type]
        updated_at=updated or created,  # type: ignore[arg-type]
        author=_name(obj.get("author"), "displayName"),
        raw=obj,
    )
