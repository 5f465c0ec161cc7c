"""Registering a trained adapter: copy its folder into the workspace and record its lineage.

The copy is staged under a temporary name in ``adapters/``; inside one database transaction the
version number is handed out, the row inserted, the manifest written and the folder renamed
into place. A failure at any step removes the folder and rolls the row back, so the registry
never holds a row without a folder or a folder without a row.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

import adaptune.registry.catalog as catalog
from adaptune import __version__
from adaptune.errors import RegistryError
from adaptune.registry.aliases import alias_target
from adaptune.registry.files import (
    MANIFEST,
    WEIGHTS,
    adapters_root,
    check_adapter,
    sha256_file,
    stage_copy,
    write_json_atomic,
)
from adaptune.registry.records import ALIASES, AdapterVersion, dump_json, split_ref
from adaptune.store import Store
from adaptune.store.domains import resolve_domain

log = logging.getLogger(__name__)


def register(
    store: Store,
    domain: str | None,
    source_dir: Path | str,
    *,
    strategy: str,
    window: str | None = None,
    base_model: str | None = None,
    base_model_hash: str | None = None,
    dataset: str | None = None,
    parent: str | None = None,
    config: Mapping[str, Any] | None = None,
    cost: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    move: bool = False,
) -> AdapterVersion:
    """Register the PEFT adapter in ``source_dir`` as the next version of ``domain``.

    ``parent`` is the version it was trained from: ``VERSION``, ``DOMAIN:VERSION`` or
    ``DOMAIN:production`` (another domain's adapter may start a new lineage). ``base_model``
    defaults to the adapter config's ``base_model_name_or_path``. Trainer checkpoints
    (``checkpoints/``, ``checkpoint-*/``) are not copied; ``move`` deletes the source afterwards.
    """
    source = Path(source_dir)
    adapter_config = check_adapter(source)
    base = base_model or adapter_config.get("base_model_name_or_path")
    if not base:
        raise RegistryError(
            f"{source} does not name its base model; pass base_model (a Hugging Face id or path)."
        )
    if not strategy:
        raise RegistryError("Say which strategy trained the adapter (adaptive, from-base ...).")
    facts = {
        "strategy": strategy,
        "window": window,
        "base_model": base,
        "base_model_hash": base_model_hash,
        "dataset": dataset,
        "config": _plain(config, "config"),
        "cost": _plain(cost, "cost"),
        "metrics": _plain(metrics, "metrics"),
    }
    root = adapters_root(store.settings.home)
    staged = None
    try:
        staged = stage_copy(source, root)
        facts["weights_sha256"] = sha256_file(staged / WEIGHTS)
        rec = _publish(store, staged, domain, parent, facts)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise RegistryError(
            f"No space left under {root} to register the adapter ({exc.strerror}); nothing "
            "was registered and the current versions are untouched. Free some space (old "
            "runs in ADAPTUNE_HOME/runs, `adaptune adapters delete`) and register again."
        ) from None
    finally:
        if staged is not None:
            shutil.rmtree(staged, ignore_errors=True)
    log.info("registered %s from %s", rec.version, source)
    if move:
        shutil.rmtree(source, ignore_errors=True)
    return rec


def _plain(value: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    data = dict(value or {})
    dump_json(data, what)  # refuse what cannot be stored before anything is written
    return data


def _publish(
    store: Store, staged: Path, domain: str | None, parent: str | None, facts: dict[str, Any]
) -> AdapterVersion:
    home = store.settings.home
    final: Path | None = None
    try:
        with store.begin() as conn:
            dom = resolve_domain(conn, domain).name
            parent_version, parent_domain = _parent(conn, parent, dom, facts, home)
            version, target = _allocate(conn, dom, adapters_root(home))
            rec = AdapterVersion(
                version=version,
                domain=dom,
                parent=parent_version,
                parent_domain=parent_domain,
                parent_deleted_at=None,
                package_version=__version__,
                created_at=datetime.now(UTC),
                path=target,
                **facts,
            )
            catalog.insert(conn, rec, home)
            write_json_atomic(staged / MANIFEST, rec.manifest())
            os.replace(staged, target)
            final = target
    except BaseException as exc:
        if final is not None:  # the commit failed after the folder was in place
            shutil.rmtree(final, ignore_errors=True)
        if isinstance(exc, IntegrityError):
            raise RegistryError(
                f"Another registration in domain '{domain}' took the same version number at "
                "the same moment; register again."
            ) from None
        raise
    return rec


def _allocate(conn: Connection, domain: str, root: Path) -> tuple[str, Path]:
    """The next free ``<domain>-v<N>`` and its folder (skipping folders left on disk)."""
    number = catalog.next_number(conn, domain)
    while (root / f"{domain}-v{number}").exists() or catalog.exists(conn, f"{domain}-v{number}"):
        log.warning("%s exists without a registry row; skipping that number", f"{domain}-v{number}")
        number += 1
        catalog.skip_to(conn, domain, number)
    return f"{domain}-v{number}", root / f"{domain}-v{number}"


def _parent(
    conn: Connection, ref: str | None, domain: str, facts: dict[str, Any], home: Path
) -> tuple[str | None, str | None]:
    """``(version, domain)`` of the parent ``ref`` names, checked against the new adapter."""
    if ref is None:
        return None, None
    ref_domain, name = split_ref(ref)
    if name in ALIASES:
        target = alias_target(conn, ref_domain or domain, name)
        if target is None:
            raise RegistryError(f"Parent '{ref}': domain '{ref_domain or domain}' has no {name}.")
        name = target
    rec = catalog.fetch(conn, name, home)
    if ref_domain is not None and rec.domain != ref_domain:
        raise RegistryError(f"Parent '{ref}': {name} belongs to domain '{rec.domain}'.")
    mine, theirs = facts["base_model_hash"], rec.base_model_hash
    if mine and theirs and mine != theirs:
        raise RegistryError(
            f"Parent {rec.version} was trained on another base model ({rec.base_model}, hash "
            f"{theirs[:12]}); an adapter can only continue from one on the same base."
        )
    return rec.version, rec.domain
