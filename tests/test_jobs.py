"""The job queue (states, leases, exactly-once claims on SQLite and PostgreSQL) and the trigger."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from adaptune.config import load_settings
from adaptune.jobs import (
    cancel,
    claim,
    enqueue,
    fail,
    finish,
    get_job,
    list_jobs,
    maybe_enqueue,
    pending_data,
    queue_depth,
    renew,
)
from adaptune.notify import deliver_due, notify
from adaptune.store import Store, open_store, schema
from adaptune.store.domains import add_domain
from pg_cluster import fresh_database


def test_a_job_goes_from_queued_to_succeeded(store):
    job = enqueue(store, "train", "d", {"steps": 3}, trigger="api")
    assert (job.state, job.attempts, job.payload, job.trigger) == ("queued", 0, {"steps": 3}, "api")
    assert queue_depth(store) == {"queued": 1, "running": 0}
    got = claim(store, "w1", lease_s=60)
    assert got is not None and got.id == job.id
    assert (got.state, got.attempts, got.lease_owner) == ("running", 1, "w1")
    assert got.started_at is not None and got.lease_expires_at > datetime.now(UTC)
    assert claim(store, "w2", lease_s=60) is None
    assert queue_depth(store) == {"queued": 0, "running": 1}
    assert finish(store, job.id, "w1", {"version": "d-v1"})
    done = get_job(store, job.id)
    assert (done.state, done.result, done.error) == ("succeeded", {"version": "d-v1"}, None)
    assert done.finished_at is not None and done.lease_expires_at is None
    data = done.to_dict()
    assert set(data) == {
        "id",
        "domain",
        "kind",
        "state",
        "trigger",
        "payload",
        "result",
        "error",
        "attempts",
        "created_at",
        "started_at",
        "finished_at",
    }
    assert data["finished_at"].endswith("+00:00") and json.loads(json.dumps(data)) == data
    assert not finish(store, job.id, "w1", {"again": True})
    assert get_job(store, job.id).result == {"version": "d-v1"}


def test_the_api_model_of_a_job_has_the_fields_of_to_dict(store):
    """``JobOut`` is made from ``JobView``, the type of ``Job.to_dict()``: they cannot drift."""
    from typing import get_type_hints

    from adaptune.jobs import JobView
    from adaptune.serve.schemas import JobOut

    data = enqueue(store, "train", "d", {"steps": 3}, trigger="api").to_dict()
    hints = get_type_hints(JobView)
    assert list(data) == list(hints) == list(JobOut.model_fields)
    assert {name: f.annotation for name, f in JobOut.model_fields.items()} == hints
    assert all(f.is_required() for f in JobOut.model_fields.values())
    assert JobOut(**data).model_dump() == data


def test_claims_go_oldest_first_and_respect_kinds_and_domains(store):
    first = enqueue(store, "train", "a")
    second = enqueue(store, "index", "b")
    assert claim(store, "w", 60, kinds=["index"]).id == second.id
    assert claim(store, "w", 60, domains=["b"]) is None
    assert claim(store, "w", 60).id == first.id


def test_fail_retries_until_attempts_are_used_up(store):
    job = enqueue(store, "train", "d", max_attempts=2)
    claim(store, "w", 60)
    assert fail(store, job.id, "w", "boom")
    again = get_job(store, job.id)
    assert (again.state, again.error, again.lease_owner) == ("queued", "boom", None)
    assert claim(store, "w", 60).attempts == 2
    assert fail(store, job.id, "w", "boom twice")
    dead = get_job(store, job.id)
    assert (dead.state, dead.error, dead.attempts) == ("failed", "boom twice", 2)
    assert claim(store, "w", 60) is None


def test_fail_without_retry_and_by_a_stranger(store):
    job = enqueue(store, "train", "d")
    claim(store, "w", 60)
    assert not fail(store, job.id, "stranger", "nope")
    assert get_job(store, job.id).state == "running"
    assert fail(store, job.id, "w", "bad data", retry=False)
    assert get_job(store, job.id).state == "failed"


def test_cancel_only_a_queued_job(store):
    queued, running = enqueue(store, "train", "a"), enqueue(store, "train", "b")
    claim(store, "w", 60, domains=["b"])
    assert cancel(store, queued.id) and get_job(store, queued.id).state == "cancelled"
    assert not cancel(store, running.id) and get_job(store, running.id).state == "running"
    assert not cancel(store, queued.id)
    assert claim(store, "w", 60) is None


def test_an_expired_lease_is_reclaimed_and_the_old_owner_is_refused(store):
    job = enqueue(store, "train", "d")
    claim(store, "old", lease_s=0.05)
    time.sleep(0.1)
    taken = claim(store, "new", lease_s=60)
    assert (taken.id, taken.lease_owner, taken.attempts) == (job.id, "new", 2)
    assert not renew(store, job.id, "old", 60)
    assert not finish(store, job.id, "old", {"stale": True})
    assert not fail(store, job.id, "old", "stale")
    assert renew(store, job.id, "new", 60)
    assert finish(store, job.id, "new", {"ok": True})
    assert get_job(store, job.id).result == {"ok": True}


def test_a_job_whose_lease_keeps_expiring_fails(store):
    job = enqueue(store, "train", "d", max_attempts=2)
    for owner in ("a", "b"):
        assert claim(store, owner, lease_s=0.05).id == job.id
        time.sleep(0.1)
    assert claim(store, "c", 60) is None
    dead = get_job(store, job.id)
    assert (dead.state, dead.attempts) == ("failed", 2)
    assert dead.error.startswith("lease expired 2 times")


def test_dedupe_returns_the_active_job(store):
    first = enqueue(store, "train", "d", dedupe=True)
    assert enqueue(store, "train", "d", dedupe=True).id == first.id
    other = enqueue(store, "train", "e", dedupe=True)
    assert other.id != first.id
    claim(store, "w", 60)
    assert enqueue(store, "train", "d", dedupe=True).id == first.id
    finish(store, first.id, "w", {})
    assert enqueue(store, "train", "d", dedupe=True).id != first.id
    assert len(enqueue(store, "train", "d").id) == 36


def test_list_jobs_newest_first_with_filters(store):
    a = enqueue(store, "train", "a")
    b = enqueue(store, "train", "b")
    c = enqueue(store, "train", "a")
    cancel(store, c.id)
    assert [j.id for j in list_jobs(store)] == [c.id, b.id, a.id]
    assert [j.id for j in list_jobs(store, domain="a", states=["queued"])] == [a.id]
    assert len(list_jobs(store, limit=1)) == 1


def _claim_all(own: Store, owner: str, start: threading.Barrier, out: list[str]) -> None:
    start.wait()
    while (job := claim(own, owner, lease_s=60)) is not None:
        out.append(job.id)


def _exactly_once(store: Store, n_jobs: int = 40, n_workers: int = 4) -> list[list[str]]:
    """Workers with their own engines claim every job at once: each job is claimed once."""
    ids = {enqueue(store, "train", f"d{i % 3}").id for i in range(n_jobs)}
    claimed: list[list[str]] = [[] for _ in range(n_workers)]
    stores = [open_store(load_settings(database_url=store.settings.database_url)) for _ in claimed]
    start = threading.Barrier(n_workers)
    threads = [
        threading.Thread(target=_claim_all, args=(stores[i], f"w{i}", start, claimed[i]))
        for i in range(n_workers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for own in stores:
        own.close()
    every = [job_id for got in claimed for job_id in got]
    assert sorted(every) == sorted(ids)
    assert all(j.attempts == 1 and j.state == "running" for j in list_jobs(store, limit=100))
    return claimed


def test_concurrent_claims_take_each_job_once_on_sqlite(store):
    _exactly_once(store)


@pytest.mark.e2e
def test_concurrent_claims_take_each_job_once_on_postgres(pg_admin, workspace):
    url = fresh_database(pg_admin, f"t_{uuid.uuid4().hex[:12]}")
    pg = open_store(load_settings(database_url=url))
    try:
        _exactly_once(pg)
        job = list_jobs(pg, limit=1)[0]
        assert finish(pg, job.id, job.lease_owner, {"ok": True})
        assert not finish(pg, job.id, "someone-else", {})
        with pg.begin() as conn:
            add_domain(conn, "d", ["github:o/r"])
            _issue(conn, 1, T0)
        assert pending_data(pg, "d", threshold=1)["new_resolved"] == 1
        (queued,) = maybe_enqueue(pg, threshold=1)
        assert maybe_enqueue(pg, threshold=1) == [] and queued.trigger == "threshold"
        notify(pg, "job.succeeded", {"id": job.id}, ["http://127.0.0.1:9/x"])
        assert deliver_due(pg, None)["retried"] == 1
    finally:
        pg.close()


# --- the new-data trigger -------------------------------------------------------------------

T0 = datetime(2024, 6, 1, tzinfo=UTC)


def _issue(conn, number: int, closed: datetime | None, pr: bool = False, reason=None) -> None:
    conn.execute(
        schema.issues.insert().values(
            source="github",
            repo="o/r",
            number=number,
            title=f"issue {number}",
            state="closed" if closed else "open",
            state_reason=reason,
            is_pull_request=pr,
            labels="[]",
            created_at=T0 - timedelta(days=30),
            updated_at=closed or T0,
            closed_at=closed,
            raw="{}",
            ingested_at=T0,
        )
    )


def _feedback(conn, created: datetime, corrected: str | None = None, resolved=None) -> None:
    ticket = str(uuid.uuid4())
    conn.execute(
        schema.tickets.insert().values(id=ticket, domain="d", title="t", created_at=created)
    )
    conn.execute(
        schema.feedback.insert().values(
            ticket_id=ticket,
            domain="d",
            rating="down",
            corrected_answer=corrected,
            resolved=resolved,
            created_at=created,
        )
    )


@pytest.fixture
def domain_data(store):
    """Domain ``d`` (github:o/r) with an adapter made at T0 and data before and after it."""
    later, earlier = T0 + timedelta(days=1), T0 - timedelta(days=1)
    with store.begin() as conn:
        add_domain(conn, "d", ["github:o/r"])
        add_domain(conn, "quiet", ["github:o/quiet"])
        for n in range(3):
            _issue(conn, n, earlier)
        _issue(conn, 10, later)
        _issue(conn, 11, later, reason="completed")
        _issue(conn, 12, later, pr=True)
        _issue(conn, 13, None)
        _issue(conn, 14, later, reason="not_planned")
        conn.execute(
            schema.adapters.insert().values(
                version="d-v1",
                domain="d",
                strategy="adaptive",
                base_model="tiny",
                weights_sha256="0" * 64,
                package_version="0",
                created_at=T0,
                path="x",
                config="{}",
                cost="{}",
                metrics="{}",
            )
        )
        _feedback(conn, later, corrected="use --fix")
        _feedback(conn, later, resolved=True)
        _feedback(conn, later)
        _feedback(conn, later, corrected="")
        _feedback(conn, earlier, corrected="old")
    return store


def test_pending_data_counts_what_arrived_since_the_newest_adapter(domain_data):
    pending = pending_data(domain_data, "d", threshold=4)
    assert pending == {
        "domain": "d",
        "since": T0.isoformat(),
        "new_resolved": 2,
        "corrections": 2,
        "threshold": 4,
        "ready": True,
    }
    assert not pending_data(domain_data, "d", threshold=5)["ready"]
    assert not pending_data(domain_data, "d", threshold=0)["ready"]
    quiet = pending_data(domain_data, "quiet", threshold=1)
    assert (quiet["since"], quiet["new_resolved"], quiet["ready"]) == (None, 0, False)


def test_maybe_enqueue_queues_one_train_job_per_ready_domain(domain_data):
    (job,) = maybe_enqueue(domain_data, threshold=4)
    assert (job.kind, job.domain, job.trigger, job.state) == ("train", "d", "threshold", "queued")
    assert maybe_enqueue(domain_data, threshold=4) == []
    claim(domain_data, "w", 60)
    assert maybe_enqueue(domain_data, threshold=4) == []
    assert fail(domain_data, job.id, "w", "not enough examples", retry=False)
    assert maybe_enqueue(domain_data, threshold=4) == []  # cooling down after a failure
    (again,) = maybe_enqueue(domain_data, threshold=4, cooldown_s=0)
    assert again.id != job.id
    assert maybe_enqueue(domain_data, threshold=5) == []
    assert len(list_jobs(domain_data)) == 2
