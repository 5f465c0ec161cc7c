"""The adapter registry: versions with lineage, per-domain aliases, rollback and export.

Each version lives in ``ADAPTUNE_HOME/adapters/<version>/`` in PEFT format (loadable by
``PeftModel.from_pretrained`` and by vLLM) with a ``manifest.json`` saying where it came from,
and as a row of the ``adapters`` table. Versions are named ``<domain>-v<N>``; each domain has
its own lineage and its own ``production`` and ``candidate`` aliases.

Entry points: :func:`register`, :func:`get`, :func:`list_versions`, :func:`resolve`,
:func:`promote`, :func:`rollback`, :func:`delete`, :func:`set_metrics`, :func:`export`,
:func:`gate` (the promotion gate).
"""

from __future__ import annotations

from adaptune.errors import RegistryError
from adaptune.registry.aliases import promote, resolve, rollback
from adaptune.registry.export import BaseLoader, default_loader, export
from adaptune.registry.gate import GateDecision, gate
from adaptune.registry.records import ALIASES, AdapterVersion, Deleted
from adaptune.registry.register import register
from adaptune.registry.versions import delete, get, list_versions, set_metrics

__all__ = [
    "ALIASES",
    "AdapterVersion",
    "BaseLoader",
    "Deleted",
    "GateDecision",
    "RegistryError",
    "default_loader",
    "delete",
    "export",
    "gate",
    "get",
    "list_versions",
    "promote",
    "register",
    "resolve",
    "rollback",
    "set_metrics",
]
