"""The new-data trigger: queue a training job when enough has been learned since the last adapter.

"Enough" is the number of newly resolved issues of the domain's sources plus the feedback that
corrects an answer or accepts a resolution, counted since the domain's newest adapter, against a
threshold. A domain whose last threshold job ended without a new adapter (it failed, or the
data were not enough to train) waits ``cooldown_s`` before the next try, so a broken domain does
not queue a failing job on every poll.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, true

from adaptune.jobs.config import WorkerConfig
from adaptune.jobs.queue import ACTIVE, Job, enqueue
from adaptune.store import Store, schema
from adaptune.store.domains import list_domains, resolve_domain

log = logging.getLogger(__name__)
COOLDOWN_S = 3600.0


def _since(conn: Connection, domain: str) -> datetime | None:
    a = schema.adapters
    return conn.execute(select(func.max(a.c.created_at)).where(a.c.domain == domain)).scalar()


def _new_resolved(conn: Connection, sources: tuple[str, ...], since: datetime | None) -> int:
    t = schema.issues
    pairs = [s.split(":", 1) for s in sources]
    if not pairs:
        return 0
    query = select(func.count()).where(
        or_(*(and_(t.c.source == src, t.c.repo == repo) for src, repo in pairs)),
        t.c.is_pull_request.is_(False),
        t.c.state == "closed",
        t.c.closed_at.is_not(None),
        or_(t.c.state_reason.is_(None), t.c.state_reason != "not_planned"),
    )
    if since is not None:
        query = query.where(t.c.closed_at > since)
    return int(conn.execute(query).scalar() or 0)


def _corrections(conn: Connection, domain: str, since: datetime | None) -> int:
    f = schema.feedback
    corrected = and_(f.c.corrected_answer.is_not(None), f.c.corrected_answer != "")
    query = select(func.count()).where(f.c.domain == domain, or_(corrected, f.c.resolved))
    if since is not None:
        query = query.where(f.c.created_at > since)
    return int(conn.execute(query).scalar() or 0)


def pending_data(store: Store, domain: str, threshold: int | None = None) -> dict[str, Any]:
    """What ``domain`` gathered since its newest adapter, and whether that reaches ``threshold``
    (default: ``ADAPTUNE_TRAIN_THRESHOLD``; 0 never is ready)."""
    if threshold is None:
        threshold = WorkerConfig.from_env().train_threshold
    with store.engine.connect() as conn:
        sources = resolve_domain(conn, domain).sources
        since = _since(conn, domain)
        resolved = _new_resolved(conn, sources, since)
        corrections = _corrections(conn, domain, since)
    return {
        "domain": domain,
        "since": since.isoformat() if since else None,
        "new_resolved": resolved,
        "corrections": corrections,
        "threshold": threshold,
        "ready": threshold > 0 and resolved + corrections >= threshold,
    }


def _busy(conn: Connection, domain: str, since: datetime | None, cooldown_s: float) -> bool:
    """A train job of ``domain`` is queued or running, or one ended recently without an adapter."""
    j = schema.jobs
    recent = datetime.now(UTC) - timedelta(seconds=cooldown_s)
    no_adapter = j.c.created_at > since if since is not None else true()
    ended_recently = and_(j.c.trigger == "threshold", j.c.finished_at > recent, no_adapter)
    query = select(j.c.id).where(
        j.c.kind == "train", j.c.domain == domain, or_(j.c.state.in_(ACTIVE), ended_recently)
    )
    return conn.execute(query.limit(1)).first() is not None


def maybe_enqueue(
    store: Store,
    threshold: int,
    domains: list[str] | None = None,
    cooldown_s: float = COOLDOWN_S,
) -> list[Job]:
    """Queue a ``train`` job (trigger ``threshold``) for every domain whose pending data reach
    ``threshold`` and that has no train job queued, running or recently ended; the new jobs."""
    if threshold <= 0:
        return []
    with store.engine.connect() as conn:
        names = [d.name for d in list_domains(conn) if domains is None or d.name in domains]
    queued = []
    for name in names:
        pending = pending_data(store, name, threshold)
        if not pending["ready"]:
            continue
        with store.engine.connect() as conn:
            if _busy(conn, name, _since(conn, name), cooldown_s):
                continue
        job = enqueue(store, "train", name, trigger="threshold", dedupe=True)
        log.info(
            "%s: %d resolved issues + %d corrections since %s: training job %s queued",
            name,
            pending["new_resolved"],
            pending["corrections"],
            pending["since"] or "the start",
            job.id,
        )
        queued.append(job)
    return queued
