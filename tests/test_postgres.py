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
