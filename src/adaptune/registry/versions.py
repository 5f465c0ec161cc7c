"""Reading, annotating and deleting registered versions.

The database is the source of truth; each version's ``manifest.json`` is rewritten from the
database record whenever the record changes, inside the same transaction, so the two agree.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

import adaptune.registry.catalog as catalog
from adaptune.errors import RegistryError
from adaptune.registry.aliases import CLEARED_BY_DELETE, clear_alias
from adaptune.registry.files import (
    MANIFEST,
    check_folder,
    move_aside,
    write_json_atomic,
)
from adaptune.registry.records import AdapterVersion, Deleted, dump_json, merge_metrics
from adaptune.store import Store

log = logging.getLogger(__name__)


def verify(rec: AdapterVersion) -> AdapterVersion:
    """``rec``, after checking that its folder holds its adapter files and its own manifest."""
    check_folder(rec.path, rec.version)
    return rec


def get(store: Store, version: str) -> AdapterVersion:
    """The record of ``version``, after checking that its files are intact."""
    with store.begin() as conn:
        rec = catalog.fetch(conn, version, store.settings.home)
    return verify(rec)


def list_versions(store: Store, domain: str | None = None) -> list[AdapterVersion]:
    """Every version (of ``domain``), oldest first, with the aliases pointing at each."""
    with store.begin() as conn:
        return catalog.fetch_all(conn, store.settings.home, domain)


def set_metrics(store: Store, version: str, metrics: Mapping[str, Any]) -> AdapterVersion:
    """Merge ``metrics`` into the version's metrics, in the database and in its manifest.

    Nested dicts are merged key by key (so per-window results can arrive one at a time);
    any other value replaces the one stored under the same key.
    """
    dump_json(dict(metrics), "metrics")
    home = store.settings.home
    path: Path | None = None
    old_manifest: str | None = None
    try:
        with store.begin() as conn:
            rec = verify(catalog.fetch(conn, version, home, for_update=True))
            merged = merge_metrics(rec.metrics, metrics)
            catalog.update_fields(conn, version, {"metrics": dump_json(merged, "metrics")})
            rec = replace(rec, metrics=merged)
            path = rec.path / MANIFEST
            old_manifest = path.read_text(encoding="utf-8")
            write_json_atomic(path, rec.manifest())
    except BaseException:
        if path is not None and old_manifest is not None:  # the commit failed: undo the file
            _write_text_atomic(path, old_manifest)
        raise
    return rec


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.restore")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def delete(store: Store, version: str, force: bool = False) -> Deleted:
    """Delete ``version``: its row, its folder and (with ``force``) the aliases on it.

    Refused for a version that has children or an alias unless ``force``; with ``force`` the
    aliases are cleared and the children keep their parent reference, marked as dangling.
    """
    home = store.settings.home
    trash: Path | None = None
    folder: Path | None = None
    try:
        with store.begin() as conn:
            rec = catalog.fetch(conn, version, home, for_update=True)
            folder = rec.path
            orphans = _unlink(conn, rec, force)
            catalog.remove(conn, version)
            trash = move_aside(rec.path)
            for child in orphans:
                kid = catalog.fetch(conn, child, home)
                write_json_atomic(kid.path / MANIFEST, kid.manifest())
    except BaseException:
        if trash is not None and folder is not None:
            os.replace(trash, folder)
        raise
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)
    log.info("deleted %s (orphaned: %s)", version, ", ".join(orphans) or "none")
    return Deleted(version=version, cleared_aliases=rec.aliases, orphans=tuple(orphans))


def _unlink(conn: Connection, rec: AdapterVersion, force: bool) -> list[str]:
    """Refuse, or clear the aliases on ``rec`` and mark its children; return the children."""
    kids = catalog.children(conn, rec.version)
    if (kids or rec.aliases) and not force:
        why = []
        if rec.aliases:
            why.append(f"it is {' and '.join(rec.aliases)}")
        if kids:
            why.append(f"{', '.join(kids)} {'was' if len(kids) == 1 else 'were'} trained from it")
        raise RegistryError(
            f"Refusing to delete {rec.version}: {'; '.join(why)}. Promote or roll back first, "
            "or pass --force (aliases are cleared, children keep a dangling parent reference)."
        )
    for alias in rec.aliases:
        clear_alias(conn, rec.domain, alias, CLEARED_BY_DELETE)
    return catalog.orphan_children(conn, rec.version, datetime.now(UTC))
