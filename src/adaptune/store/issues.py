"""Upserting and reading issues and comments.

Identity is ``(source, repo, number)`` (comments: ``(source, repo, comment_id)``). A newer
``updated_at`` replaces the stored row, an older one is ignored and the same one is a no-op, so
re-running any ingest never duplicates and never goes back in time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Any, TypeVar

from sqlalchemy import Connection, Table, and_, bindparam, select, tuple_, update

import adaptune.store.schema as schema
from adaptune.store.rows import comment_to_row, issue_to_row, row_to_comment, row_to_issue
from adaptune.types import Comment, Issue

CHUNK = 500

T = TypeVar("T", Issue, Comment)


@dataclass(slots=True)
class UpsertCounts:
    """How many rows an upsert inserted, updated and left alone."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0


def _chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def _newest(items: Iterable[T], key: Callable[[T], tuple[Any, ...]]) -> dict[tuple[Any, ...], T]:
    """Collapse repeats inside one batch, keeping the newest version of each."""
    out: dict[tuple[Any, ...], T] = {}
    for item in items:
        k = key(item)
        if k not in out or item.updated_at > out[k].updated_at:
            out[k] = item
    return out


def _aware(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def upsert_issues(conn: Connection, issues: Iterable[Issue]) -> UpsertCounts:
    """Insert new issues and replace older versions; the caller commits."""
    now = datetime.now(UTC)
    return _upsert(
        conn,
        issues,
        table=schema.issues,
        key_cols=("source", "repo", "number"),
        key=lambda i: (i.source, i.repo, i.number),
        to_row=lambda i: issue_to_row(i, now),
    )


def upsert_comments(conn: Connection, comments: Iterable[Comment]) -> UpsertCounts:
    """Insert new comments and replace edited ones; the caller commits."""
    return _upsert(
        conn,
        comments,
        table=schema.comments,
        key_cols=("source", "repo", "comment_id"),
        key=lambda c: (c.source, c.repo, c.comment_id),
        to_row=comment_to_row,
    )


def _upsert(
    conn: Connection,
    items: Iterable[T],
    table: Table,
    key_cols: tuple[str, ...],
    key: Callable[[T], tuple[Any, ...]],
    to_row: Callable[[T], dict[str, Any]],
) -> UpsertCounts:
    """Insert the items not stored yet and replace stored rows older than the item.

    ``key`` gives an item's identity, matching the values of ``key_cols`` in ``table``;
    ``to_row`` gives its column values.
    """
    rows = list(items)
    batch = _newest(rows, key=key)
    # An older copy of an item the same batch also holds is left alone: counted unchanged.
    counts = UpsertCounts(unchanged=len(rows) - len(batch))
    kcols = [table.c[name] for name in key_cols]
    for chunk in _chunks(list(batch.values())):
        found = {
            tuple(getattr(r, name) for name in key_cols): (r.id, r.updated_at)
            for r in conn.execute(
                select(table.c.id, *kcols, table.c.updated_at).where(
                    tuple_(*kcols).in_([key(item) for item in chunk])
                )
            )
        }
        new_rows, changed = [], []
        for item in chunk:
            hit = found.get(key(item))
            if hit is None:
                new_rows.append(to_row(item))
            elif _aware(item.updated_at) > hit[1]:
                changed.append({**to_row(item), "b_id": hit[0]})
            else:
                counts.unchanged += 1
        if new_rows:
            conn.execute(table.insert(), new_rows)
        replace_older(conn, table, changed)
        counts.inserted += len(new_rows)
        counts.updated += len(changed)
    return counts


def replace_older(conn: Connection, table: Table, changed: list[dict[str, Any]]) -> None:
    """Update rows (``b_id``) only where the stored version is older than the new one.

    The caller compared ``updated_at`` when it read the rows, but on PostgreSQL another
    transaction may commit a newer version in between; the condition in the UPDATE itself is
    re-checked against that committed row, so an older version never overwrites a newer one.
    """
    if not changed:
        return
    cols = {k: bindparam(k) for k in changed[0] if k != "b_id"}
    stmt = (
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .where(table.c.updated_at < bindparam("b_new"))
        .values(cols)
    )
    conn.execute(stmt, [{**row, "b_new": row["updated_at"]} for row in changed])


def select_issues(
    conn: Connection,
    repos: Sequence[tuple[str, str]] | None = None,
    include_prs: bool = True,
    with_raw: bool = False,
) -> Iterator[Issue]:
    """Stored issues (optionally of some ``(source, repo)`` pairs), oldest first."""
    t = schema.issues
    cols = [c for c in t.c if with_raw or c.name != "raw"]
    stmt = select(*cols).order_by(t.c.created_at, t.c.id)
    if repos is not None:
        if not repos:
            return
        stmt = stmt.where(tuple_(t.c.source, t.c.repo).in_(list(repos)))
    if not include_prs:
        stmt = stmt.where(t.c.is_pull_request.is_(False))
    for row in conn.execute(stmt):
        yield row_to_issue(row, with_raw=with_raw)


def select_comments(conn: Connection, source: str, repo: str, number: int) -> list[Comment]:
    """The comments of one issue, oldest first."""
    t = schema.comments
    stmt = (
        select(t)
        .where(and_(t.c.source == source, t.c.repo == repo, t.c.issue_number == number))
        .order_by(t.c.created_at, t.c.id)
    )
    return [row_to_comment(r) for r in conn.execute(stmt)]


def select_comments_of(
    conn: Connection, repos: Sequence[tuple[str, str]]
) -> dict[tuple[str, int], list[Comment]]:
    """Every comment of the given ``(source, repo)`` pairs, grouped by ``(repo, issue number)``."""
    t = schema.comments
    out: dict[tuple[str, int], list[Comment]] = {}
    if not repos:
        return out
    stmt = (
        select(t)
        .where(tuple_(t.c.source, t.c.repo).in_(list(repos)))
        .order_by(t.c.created_at, t.c.id)
    )
    for row in conn.execute(stmt):
        c = row_to_comment(row)
        out.setdefault((c.repo, c.issue_number), []).append(c)
    return out
