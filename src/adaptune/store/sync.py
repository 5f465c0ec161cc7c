"""Per-repo sync state: the ``since`` cursor, stored ETags and when the repo was last synced."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, and_, select
from sqlalchemy.exc import IntegrityError

import adaptune.store.schema as schema


@dataclass(slots=True)
class SyncState:
    """Where an incremental sync of one ``(source, repo)`` stands."""

    source: str
    repo: str
    cursor: datetime | None = None
    """Newest ``updated_at`` stored from this repo: the next sync asks only for newer rows."""
    etags: dict[str, str] = field(default_factory=dict)
    """ETag per request URL, sent back as ``If-None-Match``."""
    last_synced: datetime | None = None
    """When a sync last finished."""


def load_sync_state(conn: Connection, source: str, repo: str) -> SyncState:
    """The stored state of ``(source, repo)``, or an empty one."""
    t = schema.sync_state
    row = conn.execute(select(t).where(and_(t.c.source == source, t.c.repo == repo))).first()
    if row is None:
        return SyncState(source=source, repo=repo)
    return SyncState(
        source=source,
        repo=repo,
        cursor=row.cursor,
        etags=json.loads(row.etags or "{}"),
        last_synced=row.last_synced,
    )


def save_sync_state(conn: Connection, state: SyncState) -> None:
    """Write ``state`` (insert or replace); the caller commits."""
    t = schema.sync_state
    values = {
        "cursor": state.cursor,
        "etags": json.dumps(state.etags, sort_keys=True),
        "last_synced": state.last_synced,
    }
    where = and_(t.c.source == state.source, t.c.repo == state.repo)
    if conn.execute(t.update().where(where).values(**values)).rowcount:
        return
    try:
        with conn.begin_nested():
            conn.execute(t.insert().values(source=state.source, repo=state.repo, **values))
    except IntegrityError:  # another sync inserted it meanwhile: then ours is an update
        conn.execute(t.update().where(where).values(**values))
