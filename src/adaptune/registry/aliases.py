"""Aliases: which version of a domain is ``production`` and which is the ``candidate``.

Every change of an alias is appended to ``alias_history``; replaying the production history
gives the stack of earlier production versions, so a rollback can go back more than one step.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, select, update

import adaptune.registry.catalog as catalog
from adaptune.errors import RegistryError
from adaptune.registry.files import check_folder
from adaptune.registry.records import ALIASES, AdapterVersion, split_ref
from adaptune.store import Store, schema
from adaptune.store.domains import resolve_domain

AL, H = schema.adapter_aliases, schema.alias_history
PROMOTE, ROLLBACK = "promote", "rollback"
CLEARED_BY_PROMOTION, CLEARED_BY_DELETE = "cleared-by-promotion", "cleared-by-delete"


def alias_target(conn: Connection, domain: str, alias: str) -> str | None:
    """The version ``alias`` points at in ``domain``, if it is set."""
    query = select(AL.c.version).where(AL.c.domain == domain, AL.c.alias == alias)
    return conn.execute(query).scalar()


def _record(conn: Connection, domain: str, alias: str, version: str | None, reason: str) -> None:
    row = {"domain": domain, "alias": alias, "version": version, "reason": reason}
    conn.execute(H.insert().values(**row, set_at=datetime.now(UTC)))


def set_alias(conn: Connection, domain: str, alias: str, version: str, reason: str) -> None:
    """Point ``alias`` at ``version`` and append the change to the history."""
    now = datetime.now(UTC)
    current = alias_target(conn, domain, alias)
    if current is None:
        row = {"domain": domain, "alias": alias, "version": version, "updated_at": now}
        conn.execute(AL.insert().values(**row))
    else:
        where = (AL.c.domain == domain) & (AL.c.alias == alias)
        values = {"version": version, "previous_version": current, "updated_at": now}
        conn.execute(update(AL).where(where).values(**values))
    _record(conn, domain, alias, version, reason)


def clear_alias(conn: Connection, domain: str, alias: str, reason: str) -> None:
    """Unset ``alias`` in ``domain`` and append the change to the history."""
    conn.execute(AL.delete().where(AL.c.domain == domain, AL.c.alias == alias))
    _record(conn, domain, alias, None, reason)


def production_stack(conn: Connection, domain: str) -> list[str]:
    """The production versions of ``domain`` a rollback can return to, oldest first."""
    query = (
        select(H.c.version, H.c.reason)
        .where(H.c.domain == domain, H.c.alias == "production", H.c.version.is_not(None))
        .order_by(H.c.id)
    )
    stack: list[str] = []
    for version, reason in conn.execute(query):
        if reason == ROLLBACK:
            while stack and stack[-1] != version:
                stack.pop()
        if not stack or stack[-1] != version:
            stack.append(version)
    live: list[str] = []
    for version in stack:  # a force-deleted version cannot be served again
        if catalog.exists(conn, version) and (not live or live[-1] != version):
            live.append(version)
    return live


def promote(store: Store, version: str, alias: str = "production") -> AdapterVersion:
    """Point ``alias`` of the version's domain at ``version``.

    Promoting to ``production`` also clears ``candidate`` when it pointed at the same version.
    """
    if alias not in ALIASES:
        raise RegistryError(f"Unknown alias '{alias}'; use one of: {', '.join(ALIASES)}.")
    home = store.settings.home
    with store.begin() as conn:
        rec = catalog.fetch(conn, version, home)
        check_folder(rec.path, rec.version)  # never point an alias at a broken folder
        if alias_target(conn, rec.domain, alias) != version:
            set_alias(conn, rec.domain, alias, version, PROMOTE)
        if alias == "production" and alias_target(conn, rec.domain, "candidate") == version:
            clear_alias(conn, rec.domain, "candidate", CLEARED_BY_PROMOTION)
        return catalog.fetch(conn, version, home)


def rollback(store: Store, domain: str | None = None) -> AdapterVersion:
    """Point ``production`` back at the version that was production before the current one."""
    with store.begin() as conn:
        name = resolve_domain(conn, domain).name
        current = alias_target(conn, name, "production")
        if current is None:
            raise RegistryError(
                f"Domain '{name}' has no production adapter to roll back; promote one with "
                "`adaptune adapters promote VERSION`."
            )
        stack = production_stack(conn, name)
        if len(stack) < 2 or stack[-1] != current:
            raise RegistryError(
                f"Domain '{name}' has no earlier production adapter than {current}; "
                "promote another version instead."
            )
        set_alias(conn, name, "production", stack[-2], ROLLBACK)
        return catalog.fetch(conn, stack[-2], store.settings.home)


def resolve(store: Store, domain: str | None, ref: str) -> AdapterVersion:
    """The version ``ref`` names: an alias or a version, optionally written ``DOMAIN:REF``.

    An alias needs a domain: the one in ``ref``, else ``domain``, else the only one there is.
    A version given with a domain must belong to it. The version's files are checked, so what
    comes back can be loaded.
    """
    ref_domain, name = split_ref(ref)
    wanted = ref_domain or domain
    with store.begin() as conn:
        if name in ALIASES:
            wanted = resolve_domain(conn, wanted).name
            target = alias_target(conn, wanted, name)
            if target is None:
                raise RegistryError(
                    f"Domain '{wanted}' has no {name} adapter; promote one with "
                    f"`adaptune adapters promote VERSION --alias {name}`."
                )
            name = target
        rec = catalog.fetch(conn, name, store.settings.home)
    if wanted is not None and rec.domain != wanted:
        raise RegistryError(f"{rec.version} belongs to domain '{rec.domain}', not '{wanted}'.")
    check_folder(rec.path, rec.version)
    return rec
