"""The store: one database holding issues, comments, domains and sync state.

Open it with :func:`open_store`; every stage reads and writes through :class:`Store`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, case, func, select

from adaptune.config import Settings, ensure_home, load_settings
from adaptune.store import schema
from adaptune.store.db import create_db_engine, migrate
from adaptune.store.domains import list_domains

__all__ = ["Store", "open_store"]


class Store:
    """A migrated database plus the workspace it belongs to."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A connection inside one transaction, committed on success, rolled back on error."""
        with self.engine.begin() as conn:
            yield conn

    def status(self) -> dict[str, Any]:
        """What is stored, in the shape of ``adaptune status --json``."""
        t, s = schema.issues, schema.sync_state
        is_pr = case((t.c.is_pull_request.is_(True), 1), else_=0)
        with self.engine.connect() as conn:
            per_repo = conn.execute(
                select(t.c.source, t.c.repo, func.count(), func.sum(is_pr))
                .group_by(t.c.source, t.c.repo)
                .order_by(t.c.source, t.c.repo)
            ).all()
            synced = {(r.source, r.repo): r.last_synced for r in conn.execute(select(s))}
            n_comments = conn.execute(select(func.count()).select_from(schema.comments)).scalar()
            domains = list_domains(conn)
        repos = []
        for source, repo, total, prs in per_repo:
            last = synced.get((source, repo))
            repos.append(
                {
                    "source": source,
                    "repo": repo,
                    "issues": int(total) - int(prs or 0),
                    "pull_requests": int(prs or 0),
                    "last_synced": last.isoformat() if last else None,
                }
            )
        return {
            "issues": sum(r["issues"] for r in repos),
            "pull_requests": sum(r["pull_requests"] for r in repos),
            "comments": int(n_comments or 0),
            "repos": repos,
            "domains": [{"name": d.name, "sources": list(d.sources)} for d in domains],
            "home": str(self.settings.home),
            "database": self.settings.database_url_safe,
        }

    def close(self) -> None:
        """Release the engine's connections."""
        self.engine.dispose()


def open_store(settings: Settings | None = None) -> Store:
    """Open (and migrate) the store of ``settings`` (default: from the environment)."""
    settings = settings or load_settings()
    if not settings.home.is_dir():  # removed since load_settings made it
        ensure_home(settings.home)
    engine = create_db_engine(settings.database_url)
    migrate(engine)
    return Store(settings, engine)
