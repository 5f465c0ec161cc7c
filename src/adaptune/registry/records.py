"""The registry's value type, :class:`AdapterVersion`, and its database / manifest forms.

A version's facts live twice: as a row of ``adapters`` (what the code queries) and as
``manifest.json`` next to the weights (what travels with an exported adapter). Both are built
from the one dataclass here so that they cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from adaptune.errors import RegistryError

ALIASES = ("production", "candidate")
"""The alias names a domain can point at one of its versions."""

MANIFEST_FIELDS = (
    "version",
    "domain",
    "parent",
    "parent_domain",
    "parent_deleted_at",
    "strategy",
    "window",
    "base_model",
    "base_model_hash",
    "dataset",
    "config",
    "cost",
    "metrics",
    "weights_sha256",
    "package_version",
    "created_at",
)


@dataclass(frozen=True, slots=True)
class AdapterVersion:
    """One registered LoRA adapter: where it came from, what it cost, how it scored."""

    version: str
    """Readable unique id, ``<domain>-v<N>`` with N increasing per domain."""
    domain: str
    """The domain whose lineage it belongs to."""
    parent: str | None
    """The version it was trained from (``None`` when trained from the base model)."""
    parent_domain: str | None
    """The parent's domain; differs from ``domain`` when a new domain starts from another's."""
    parent_deleted_at: datetime | None
    """When the parent was force-deleted (the reference then dangles); ``None`` otherwise."""
    strategy: str
    """Training strategy: ``adaptive``, ``from-base`` or ``cumulative``."""
    window: str | None
    """The time window (or range of windows) it was trained on."""
    base_model: str
    """Hugging Face id or local path of the base model."""
    base_model_hash: str | None
    """Content hash of the base model's weights, when the trainer computed one."""
    dataset: str | None
    """The dataset build hash it was trained on."""
    config: dict[str, Any] = field(hash=False)
    """Training configuration (LoRA rank, learning rate, steps …)."""
    cost: dict[str, Any] = field(hash=False)
    """Training cost (seconds, tokens, device …)."""
    metrics: dict[str, Any] = field(hash=False)
    """Evaluation results, filled in later by :func:`adaptune.registry.set_metrics`."""
    weights_sha256: str
    """sha256 of ``adapter_model.safetensors``."""
    package_version: str
    """``adaptune.__version__`` of the code that registered it."""
    created_at: datetime
    """When it was registered (UTC)."""
    path: Path
    """Its folder, ``ADAPTUNE_HOME/adapters/<version>``."""
    aliases: tuple[str, ...] = ()
    """Alias names pointing at it now (read from the database, not stored in the manifest)."""

    def manifest(self) -> dict[str, Any]:
        """The ``manifest.json`` form (times as ISO strings, no local path, no aliases)."""
        data = {name: getattr(self, name) for name in MANIFEST_FIELDS}
        data["created_at"] = self.created_at.isoformat()
        if self.parent_deleted_at is not None:
            data["parent_deleted_at"] = self.parent_deleted_at.isoformat()
        return data

    def summary(self) -> dict[str, Any]:
        """The shape of ``adaptune adapters list --json`` and ``GET /v1/adapters``."""
        return {
            "version": self.version,
            "parent": self.parent,
            "strategy": self.strategy,
            "window": self.window,
            "base_model": self.base_model,
            "dataset": self.dataset,
            "created_at": self.created_at.isoformat(),
            "aliases": list(self.aliases),
            "metrics": self.metrics,
            "cost": self.cost,
        }


@dataclass(frozen=True, slots=True)
class Deleted:
    """What :func:`adaptune.registry.delete` did."""

    version: str
    """The version that is gone (row and folder)."""
    cleared_aliases: tuple[str, ...]
    """Aliases that pointed at it and are now unset."""
    orphans: tuple[str, ...]
    """Children that now hold a dangling parent reference (``parent_deleted_at`` set)."""


def dump_json(value: Mapping[str, Any], what: str) -> str:
    """Strict JSON text of ``value`` (no NaN), or a :class:`RegistryError` saying what is wrong."""
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise RegistryError(
            f"The {what} cannot be stored as JSON ({exc}); pass plain numbers, strings, "
            "lists and dicts (use None for a missing or infinite value)."
        ) from None


def to_row(rec: AdapterVersion, home: Path) -> dict[str, Any]:
    """The ``adapters`` column values of ``rec`` (its path relative to the workspace)."""
    row = {name: getattr(rec, name) for name in MANIFEST_FIELDS}
    for name in ("config", "cost", "metrics"):
        row[name] = dump_json(row[name], name)
    row["path"] = rec.path.relative_to(home).as_posix()
    return row


def from_row(row: Mapping[str, Any], home: Path, aliases: tuple[str, ...] = ()) -> AdapterVersion:
    """The record of an ``adapters`` row; a relative ``path`` is taken from the workspace."""
    data = {name: row[name] for name in MANIFEST_FIELDS}
    for name in ("config", "cost", "metrics"):
        data[name] = json.loads(row[name] or "{}")
    return AdapterVersion(**data, path=home / row["path"], aliases=aliases)


def merge_metrics(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """``old`` updated with ``new``; nested dicts are merged key by key, other values replaced."""
    merged = dict(old)
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_metrics(merged[key], value)
        else:
            merged[key] = value
    return merged


def split_ref(ref: str) -> tuple[str | None, str]:
    """``DOMAIN:NAME`` → ``(DOMAIN, NAME)``; a bare ``NAME`` → ``(None, NAME)``."""
    domain, sep, name = ref.partition(":")
    if not sep:
        return None, ref
    if not domain or not name:
        raise RegistryError(f"'{ref}' is not an adapter reference; write DOMAIN:VERSION.")
    return domain, name
