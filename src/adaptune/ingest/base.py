"""What every source shares: the ``Source`` protocol and writing a batch into the store."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Protocol

from adaptune.store import Store
from adaptune.store.domains import ensure_domain
from adaptune.store.issues import upsert_comments, upsert_issues
from adaptune.store.sync import load_sync_state, save_sync_state
from adaptune.types import Comment, IngestReport, Issue

Progress = Callable[[str], None]
"""Receives one-line progress messages (a page fetched, a rate-limit wait …)."""


class Source(Protocol):
    """A tracker or file that issues can be ingested from."""

    def ingest(self, store: Store, domain: str | None = None) -> IngestReport:
        """Read what is new from the source and upsert it into ``store``."""
        ...


def write_batch(
    store: Store,
    report: IngestReport,
    issues: Iterable[Issue],
    comments: Iterable[Comment] = (),
    domain: str | None = None,
) -> None:
    """Upsert ``issues`` and ``comments`` in one transaction and count them in ``report``.

    Each repo seen is put in ``domain`` (or its own default domain) the first time it appears.
    """
    issues = list(issues)
    comments = list(comments)
    repos = {(i.source, i.repo) for i in issues} | {(c.source, c.repo) for c in comments}
    with store.begin() as conn:
        for source, repo in sorted(repos):
            ensure_domain(conn, source, repo, domain)
        counts = upsert_issues(conn, issues)
        ccounts = upsert_comments(conn, comments)
    report.inserted += counts.inserted
    report.updated += counts.updated
    report.unchanged += counts.unchanged
    report.comments += ccounts.inserted + ccounts.updated
    report.repos |= repos


def mark_synced(store: Store, repos: Iterable[tuple[str, str]]) -> None:
    """Record that data for ``repos`` arrived now (``last_synced``), leaving cursors alone."""
    now = datetime.now(UTC)
    with store.begin() as conn:
        for source, repo in sorted(set(repos)):
            state = load_sync_state(conn, source, repo)
            state.last_synced = now
            save_sync_state(conn, state)
