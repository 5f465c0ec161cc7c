"""The store and ingest on a real PostgreSQL server (a throw-away cluster), not only SQLite."""

from __future__ import annotations

import pytest

from adaptune.ingest import ingest
from adaptune.ingest.files import file_source
from adaptune.store import Store
from adaptune.store.db import current_revision, head_revision
from adaptune.store.domains import add_domain, resolve_domain
from adaptune.store.issues import select_issues
from conftest import shared_file

pytestmark = pytest.mark.e2e


def test_migrations_run_on_postgres(pg_store: Store) -> None:
    assert current_revision(pg_store.engine) == head_revision()
    assert pg_store.status()["database"].startswith("postgresql+psycopg://")


def test_real_dump_ingests_and_reingests_on_postgres(pg_store: Store) -> None:
    path = shared_file("github/huggingface-datasets.issues.jsonl.gz")
    report = ingest(file_source(path), pg_store)
    assert (report.inserted, report.rejected) == (6419, [])
    status = pg_store.status()
    assert (status["issues"], status["pull_requests"]) == (2568, 3851)
    again = ingest(file_source(path), pg_store)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 6419)
    with pg_store.begin() as conn:
        first = next(select_issues(conn, with_raw=True))
        add_domain(conn, "other", ["github:o/r"])
        assert resolve_domain(conn, "datasets").sources == ("github:huggingface/datasets",)
    assert first.created_at.tzinfo is not None and first.raw["number"] == first.number


def test_nul_bytes_and_huge_bodies_survive_postgres(pg_store: Store, tmp_path) -> None:
    import json

    path = tmp_path / "odd.jsonl"
    row = {
        "number": 1,
        "title": "nul \x00 inside",
        "body": "b\x00" + "x" * 2_000_000,
        "state": "open",
        "created_at": "2024-01-01T00:00:00Z",
        "html_url": "https://github.com/o/r/issues/1",
    }
    path.write_text(json.dumps(row) + "\n")
    report = ingest(file_source(path), pg_store)
    assert report.inserted == 1 and report.rejected == []


def test_an_older_version_never_overwrites_a_newer_one_committed_meanwhile(
    pg_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A (older version) reads, B (newer) reads, updates and commits, then A updates: B wins."""
    import threading
    from datetime import UTC, datetime, timedelta

    from adaptune.store import issues as store_issues
    from adaptune.types import Issue

    t0 = datetime(2024, 1, 1, tzinfo=UTC)

    def version(day: int, title: str) -> Issue:
        return Issue(source="github", repo="o/r", number=1, title=title, body="b", state="open",
                     created_at=t0, updated_at=t0 + timedelta(days=day))  # fmt: skip

    with pg_store.begin() as conn:
        store_issues.upsert_issues(conn, [version(0, "first")])
    b_committed, a_waiting = threading.Event(), threading.Event()
    real = store_issues.replace_older

    def paused(conn, table, changed):  # A stops between its read and its write
        if threading.current_thread().name == "A":
            a_waiting.set()
            assert b_committed.wait(30)
        real(conn, table, changed)

    monkeypatch.setattr(store_issues, "replace_older", paused)
    errors: list[BaseException] = []

    def older() -> None:
        try:
            with pg_store.begin() as conn:
                store_issues.upsert_issues(conn, [version(1, "older")])
        except BaseException as exc:  # reported below
            errors.append(exc)

    a = threading.Thread(target=older, name="A")
    a.start()
    assert a_waiting.wait(30)
    with pg_store.begin() as conn:
        store_issues.upsert_issues(conn, [version(2, "newer")])
    b_committed.set()
    a.join(30)
    assert not errors
    with pg_store.begin() as conn:
        (got,) = list(store_issues.select_issues(conn))
    assert got.title == "newer" and got.updated_at == t0 + timedelta(days=2)
