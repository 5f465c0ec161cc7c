"""Ingest: getting issues from trackers (GitHub, Jira) and files into the store.

Each source is one module exposing a class that follows :class:`~adaptune.ingest.base.Source`;
:func:`ingest` runs any of them and returns an :class:`~adaptune.types.IngestReport`.
"""

from __future__ import annotations

from adaptune.ingest.base import Source
from adaptune.store import Store
from adaptune.types import IngestReport

__all__ = ["Source", "ingest"]


def ingest(source: Source, store: Store, domain: str | None = None) -> IngestReport:
    """Run ``source`` against ``store`` (the one entry point the CLI, worker and tests call)."""
    return source.ingest(store, domain=domain)
