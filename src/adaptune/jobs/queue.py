"""The job queue: rows of the ``jobs`` table, claimed by workers under a time-limited lease.

A worker claims a job (state ``running``, ``attempts`` + 1, a lease until ``lease_expires_at``)
and renews the lease while it works. A worker that dies stops renewing; once the lease expires
another worker reclaims the job, so a crashed job is retried and a finished one never runs
twice: only the lease owner may finish or fail it.

Claiming is atomic across processes: PostgreSQL locks the chosen row with ``FOR UPDATE SKIP
LOCKED``; on every backend the claim is a conditional ``UPDATE`` that only succeeds while the row
is still in the state the claimer saw, so two workers never both win.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict

from sqlalchemy import ColumnElement, Connection, Row, and_, func, or_, select, update

from adaptune.store import Store, schema

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = (
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
)
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
ACTIVE = (QUEUED, RUNNING)
_CLAIM_ROUNDS = 20
_CANDIDATES = 8


class JobView(TypedDict):
    """A job as JSON-ready data (times as ISO 8601), as the HTTP API shows it.

    The service's response model (``adaptune.serve.schemas.JobOut``) is made from these fields.
    """

    id: str
    domain: str | None
    kind: str
    state: str
    trigger: str
    payload: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    attempts: int
    created_at: str | None
    started_at: str | None
    finished_at: str | None


@dataclass(frozen=True)
class Job:
    """One row of the queue."""

    id: str
    domain: str | None
    kind: str
    state: str
    trigger: str
    payload: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    attempts: int
    max_attempts: int
    lease_owner: str | None
    lease_expires_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    def to_dict(self) -> JobView:
        """The job as JSON-ready data (times as ISO 8601), as the HTTP API shows it."""

        def iso(t: datetime | None) -> str | None:
            return t.isoformat() if t else None

        return JobView(
            id=self.id,
            domain=self.domain,
            kind=self.kind,
            state=self.state,
            trigger=self.trigger,
            payload=self.payload,
            result=self.result,
            error=self.error,
            attempts=self.attempts,
            created_at=iso(self.created_at),
            started_at=iso(self.started_at),
            finished_at=iso(self.finished_at),
        )


def _job(row: Row) -> Job:
    return Job(
        id=row.id,
        domain=row.domain,
        kind=row.kind,
        state=row.state,
        trigger=row.trigger,
        payload=json.loads(row.payload or "{}"),
        result=json.loads(row.result) if row.result is not None else None,
        error=row.error,
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        lease_owner=row.lease_owner,
        lease_expires_at=row.lease_expires_at,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _fetch(conn: Connection, job_id: str) -> Job | None:
    row = conn.execute(select(schema.jobs).where(schema.jobs.c.id == job_id)).first()
    return _job(row) if row else None


def _active(conn: Connection, kind: str, domain: str | None) -> Job | None:
    t = schema.jobs
    same_domain = t.c.domain.is_(None) if domain is None else t.c.domain == domain
    row = conn.execute(
        select(t)
        .where(t.c.kind == kind, same_domain, t.c.state.in_(ACTIVE))
        .order_by(t.c.created_at)
        .limit(1)
    ).first()
    return _job(row) if row else None


def enqueue(
    store: Store,
    kind: str,
    domain: str | None,
    payload: dict[str, Any] | None = None,
    trigger: str = "manual",
    max_attempts: int = 3,
    dedupe: bool = False,
) -> Job:
    """Queue a job; with ``dedupe``, return the queued or running job of the same kind and domain
    instead of adding a second one."""
    now = _now()
    job_id = str(uuid.uuid4())
    with store.begin() as conn:
        if dedupe and (existing := _active(conn, kind, domain)) is not None:
            return existing
        conn.execute(
            schema.jobs.insert().values(
                id=job_id,
                domain=domain,
                kind=kind,
                state=QUEUED,
                trigger=trigger,
                payload=json.dumps(payload or {}, default=str),
                attempts=0,
                max_attempts=max(1, max_attempts),
                created_at=now,
                updated_at=now,
            )
        )
        job = _fetch(conn, job_id)
    assert job is not None
    return job


def get_job(store: Store, job_id: str) -> Job | None:
    """The job ``job_id``, or ``None`` when there is none."""
    with store.engine.connect() as conn:
        return _fetch(conn, job_id)


def list_jobs(
    store: Store,
    domain: str | None = None,
    states: Collection[str] | None = None,
    limit: int = 50,
) -> list[Job]:
    """Jobs, newest first, optionally of one domain and in some states."""
    t = schema.jobs
    query = select(t).order_by(t.c.created_at.desc(), t.c.id).limit(limit)
    if domain is not None:
        query = query.where(t.c.domain == domain)
    if states is not None:
        query = query.where(t.c.state.in_(list(states)))
    with store.engine.connect() as conn:
        return [_job(r) for r in conn.execute(query)]


def _claimable(now: datetime) -> ColumnElement[bool]:
    t = schema.jobs
    return or_(t.c.state == QUEUED, and_(t.c.state == RUNNING, t.c.lease_expires_at < now))


def _seen(row: Row) -> ColumnElement[bool]:
    """The row's state as the claimer saw it: the update succeeds only if nobody changed it."""
    t = schema.jobs
    owner = (
        t.c.lease_owner.is_(None) if row.lease_owner is None else t.c.lease_owner == row.lease_owner
    )
    return and_(t.c.id == row.id, t.c.state == row.state, t.c.attempts == row.attempts, owner)


def _take(conn: Connection, row: Row, owner: str, lease_s: float, now: datetime) -> Job | None:
    """Claim ``row`` (or fail it when its attempts are used up); the claimed job or ``None``."""
    t = schema.jobs
    if row.state == RUNNING and row.attempts >= row.max_attempts:
        error = f"lease expired {row.attempts} times: the worker running it died or hung"
        values: dict[str, Any] = {"state": FAILED, "error": error, "finished_at": now}
        values |= {"lease_expires_at": None, "updated_at": now}
        conn.execute(update(t).where(_seen(row)).values(**values))
        return None
    values = {
        "state": RUNNING,
        "attempts": row.attempts + 1,
        "lease_owner": owner,
        "lease_expires_at": now + timedelta(seconds=lease_s),
        "started_at": row.started_at or now,
        "updated_at": now,
    }
    if conn.execute(update(t).where(_seen(row)).values(**values)).rowcount != 1:
        return None
    return _fetch(conn, row.id)


def claim(
    store: Store,
    owner: str,
    lease_s: float,
    kinds: Collection[str] | None = None,
    domains: Collection[str] | None = None,
) -> Job | None:
    """Claim the oldest queued job, or a running one whose lease expired (its worker died).

    The job becomes ``running`` under ``owner``'s lease for ``lease_s`` seconds and its attempts
    grow by one. A job whose lease expired with no attempts left is failed instead. ``None`` when
    there is nothing to do.
    """
    t = schema.jobs
    for _ in range(_CLAIM_ROUNDS):
        now = _now()
        query = select(t).where(_claimable(now)).order_by(t.c.created_at, t.c.id)
        if kinds is not None:
            query = query.where(t.c.kind.in_(list(kinds)))
        if domains is not None:
            query = query.where(t.c.domain.in_(list(domains)))
        # PostgreSQL locks one row, skipping rows other claimers hold; SQLite has no row locks
        # and relies on the conditional update, trying a few candidates per round.
        if store.engine.dialect.name == "sqlite":
            query = query.limit(_CANDIDATES)
        else:
            query = query.limit(1).with_for_update(skip_locked=True)
        with store.begin() as conn:
            rows = conn.execute(query).all()
            if not rows:
                return None
            for row in rows:
                if (job := _take(conn, row, owner, lease_s, now)) is not None:
                    return job
    return None


def renew(store: Store, job_id: str, owner: str, lease_s: float) -> bool:
    """Extend ``owner``'s lease on a running job; ``False`` when the lease was lost."""
    t = schema.jobs
    now = _now()
    with store.begin() as conn:
        done = conn.execute(
            update(t)
            .where(t.c.id == job_id, t.c.state == RUNNING, t.c.lease_owner == owner)
            .values(lease_expires_at=now + timedelta(seconds=lease_s), updated_at=now)
        )
        return done.rowcount == 1


def _end(store: Store, job_id: str, owner: str, values: dict[str, Any]) -> bool:
    t = schema.jobs
    now = _now()
    with store.begin() as conn:
        done = conn.execute(
            update(t)
            .where(t.c.id == job_id, t.c.state == RUNNING, t.c.lease_owner == owner)
            .values(lease_expires_at=None, updated_at=now, **values)
        )
        return done.rowcount == 1


def finish(store: Store, job_id: str, owner: str, result: dict[str, Any]) -> bool:
    """Mark the job succeeded with ``result``; refused (``False``) unless ``owner`` holds it."""
    body = json.dumps(result, default=str)
    values = {"state": SUCCEEDED, "result": body, "error": None, "finished_at": _now()}
    return _end(store, job_id, owner, values)


def fail(store: Store, job_id: str, owner: str, error: str, retry: bool = True) -> bool:
    """Record ``error``: back to the queue while attempts remain and ``retry``, else failed.

    ``False`` when ``owner`` does not hold the job's lease (nothing is changed).
    """
    job = get_job(store, job_id)
    if job is None:
        return False
    again = retry and job.attempts < job.max_attempts
    values: dict[str, Any] = {"state": QUEUED if again else FAILED, "error": error}
    if again:
        values["lease_owner"] = None
    else:
        values["finished_at"] = _now()
    return _end(store, job_id, owner, values)


def cancel(store: Store, job_id: str) -> bool:
    """Cancel a queued job; ``False`` when it is not queued (running or finished jobs stay)."""
    t = schema.jobs
    now = _now()
    with store.begin() as conn:
        done = conn.execute(
            update(t)
            .where(t.c.id == job_id, t.c.state == QUEUED)
            .values(state=CANCELLED, finished_at=now, updated_at=now)
        )
        return done.rowcount == 1


def queue_depth(store: Store) -> dict[str, int]:
    """How many jobs wait and run: ``{"queued": n, "running": n}``."""
    t = schema.jobs
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(t.c.state, func.count()).where(t.c.state.in_(ACTIVE)).group_by(t.c.state)
        ).all()
    counts = {state: int(n) for state, n in rows}
    return {QUEUED: counts.get(QUEUED, 0), RUNNING: counts.get(RUNNING, 0)}
