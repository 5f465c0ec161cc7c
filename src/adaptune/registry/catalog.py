"""The registry's rows: versions, their numbering, children and the aliases pointing at them.

Every function takes an open connection and leaves committing to the caller, so that one
registry action (a register, a promote, a delete) is one transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select, update

from adaptune.errors import RegistryError
from adaptune.registry.records import AdapterVersion, from_row, to_row
from adaptune.store import schema

A, S, AL = schema.adapters, schema.adapter_sequences, schema.adapter_aliases


def next_number(conn: Connection, domain: str) -> int:
    """Hand out the next version number of ``domain`` (never one handed out before)."""
    bumped = conn.execute(
        update(S).where(S.c.domain == domain).values(last_number=S.c.last_number + 1)
    ).rowcount
    if not bumped:
        conn.execute(S.insert().values(domain=domain, last_number=1))
    return int(conn.execute(select(S.c.last_number).where(S.c.domain == domain)).scalar_one())


def skip_to(conn: Connection, domain: str, number: int) -> None:
    """Record ``number`` as handed out (used to step over a folder already on disk)."""
    conn.execute(update(S).where(S.c.domain == domain).values(last_number=number))


def insert(conn: Connection, rec: AdapterVersion, home: Path) -> None:
    """Insert the row of a new version."""
    conn.execute(A.insert().values(**to_row(rec, home)))


def aliases_by_version(conn: Connection, domain: str | None = None) -> dict[str, tuple[str, ...]]:
    """``{version: (alias, …)}`` for every alias (of ``domain``) set now."""
    query = select(AL.c.version, AL.c.alias).order_by(AL.c.alias)
    if domain is not None:
        query = query.where(AL.c.domain == domain)
    found: dict[str, tuple[str, ...]] = {}
    for version, alias in conn.execute(query):
        found[version] = (*found.get(version, ()), alias)
    return found


def fetch(
    conn: Connection, version: str, home: Path, *, for_update: bool = False
) -> AdapterVersion:
    """The record of ``version`` (with its aliases), or a :class:`RegistryError`.

    ``for_update`` locks the row until the transaction ends (on backends that lock rows).
    """
    query = select(A).where(A.c.version == version)
    row = conn.execute(query.with_for_update() if for_update else query).mappings().first()
    if row is None:
        raise RegistryError(
            f"No adapter version '{version}'; see `adaptune adapters list` for the known ones."
        )
    aliases = aliases_by_version(conn, row["domain"]).get(version, ())
    return from_row(row, home, aliases)


def fetch_all(conn: Connection, home: Path, domain: str | None = None) -> list[AdapterVersion]:
    """Every version (of ``domain``), oldest first."""
    query = select(A).order_by(A.c.domain, A.c.created_at, A.c.version)
    if domain is not None:
        query = query.where(A.c.domain == domain)
    aliases = aliases_by_version(conn, domain)
    rows = conn.execute(query).mappings()
    return [from_row(r, home, aliases.get(r["version"], ())) for r in rows]


def exists(conn: Connection, version: str) -> bool:
    """True when ``version`` is registered."""
    return conn.execute(select(A.c.version).where(A.c.version == version)).first() is not None


def children(conn: Connection, version: str) -> list[str]:
    """Versions whose parent is ``version``."""
    query = select(A.c.version).where(A.c.parent == version).order_by(A.c.version)
    return list(conn.execute(query).scalars())


def update_fields(conn: Connection, version: str, values: Mapping[str, Any]) -> None:
    """Set columns of one version's row."""
    conn.execute(update(A).where(A.c.version == version).values(**values))


def orphan_children(conn: Connection, version: str, when: datetime) -> list[str]:
    """Mark the children of ``version`` as holding a dangling parent reference."""
    kids = children(conn, version)
    if kids:
        conn.execute(update(A).where(A.c.parent == version).values(parent_deleted_at=when))
    return kids


def remove(conn: Connection, version: str) -> None:
    """Delete one version's row."""
    conn.execute(A.delete().where(A.c.version == version))
