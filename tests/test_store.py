"""The store: migrations, engine settings and upsert semantics."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect, select, text

from adaptune.config import load_settings
from adaptune.errors import DomainError, StoreError
from adaptune.store import open_store, schema
from adaptune.store.db import create_db_engine, current_revision, head_revision, migrate
from adaptune.store.domains import (
    add_domain,
    assign_source,
    ensure_domain,
    parse_source,
    resolve_domain,
)
from adaptune.store.issues import select_issues, upsert_issues
from adaptune.types import Issue

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def make_issue(number: int, updated: datetime = T0, **kw: object) -> Issue:
    fields = {
        "source": "github",
        "repo": "o/r",
        "number": number,
        "title": f"issue {number}",
        "body": "body",
        "state": "open",
        "created_at": T0,
        "updated_at": updated,
    }
    fields.update(kw)
    return Issue(**fields)  # type: ignore[arg-type]


def test_migrating_an_empty_database_creates_every_table(tmp_path):
    engine = create_db_engine(f"sqlite:///{tmp_path / 'x.db'}")
    assert current_revision(engine) is None
    migrate(engine)
    assert current_revision(engine) == head_revision()
    insp = inspect(engine)
    for table in schema.metadata.sorted_tables:
        got = {c["name"] for c in insp.get_columns(table.name)}
        assert got == {c.name for c in table.columns}, table.name
    migrate(engine)  # a second run is a no-op
    assert current_revision(engine) == head_revision()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(store):
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_workspace_comes_from_adaptune_home(workspace):
    settings = load_settings()
    assert settings.home == workspace.resolve()
    assert settings.database_url == f"sqlite:///{workspace.resolve() / 'adaptune.db'}"


def test_a_bad_database_url_is_a_clear_error():
    with pytest.raises(StoreError, match="not a database URL"):
        create_db_engine("::::")
    with pytest.raises(StoreError, match="use sqlite"):
        create_db_engine("nonsense://")
    with pytest.raises(StoreError, match=r"adaptune\[postgres\]"):
        create_db_engine("postgresql+nosuchdriver://u:secret@localhost/db")


def test_upsert_newer_replaces_older_ignored_same_is_noop(store):
    with store.begin() as conn:
        c = upsert_issues(conn, [make_issue(1), make_issue(2)])
    assert (c.inserted, c.updated, c.unchanged) == (2, 0, 0)
    later = T0 + timedelta(days=1)
    with store.begin() as conn:
        c = upsert_issues(
            conn,
            [
                make_issue(1, later, title="new title"),
                make_issue(2, T0 - timedelta(days=1), title="stale"),
                make_issue(2, T0, title="same"),
            ],
        )
    # issue 2's two versions collapse to the newest of the batch, which equals the stored one;
    # the stale copy is counted unchanged too, so every row given is counted once
    assert (c.inserted, c.updated, c.unchanged) == (0, 1, 2)
    with store.begin() as conn:
        got = {i.number: i for i in select_issues(conn)}
    assert got[1].title == "new title" and got[1].updated_at == later
    assert got[2].title == "issue 2"
    assert got[1].updated_at.tzinfo is not None


def test_round_trip_keeps_every_field(store):
    issue = make_issue(
        7,
        labels=("bug", "good first issue"),
        is_pull_request=True,
        merged_at=T0,
        closed_at=T0,
        state="closed",
        state_reason="completed",
        author="alice",
        author_association="MEMBER",
        comments_count=3,
        url="https://github.com/o/r/pull/7",
        body="nul\x00byte",
        raw={"number": 7},
    )
    with store.begin() as conn:
        upsert_issues(conn, [issue])
        (back,) = list(select_issues(conn, with_raw=True))
    assert back == replace(issue, body="nulbyte")
    assert back.raw == {"number": 7}


def test_domains_group_sources_and_refuse_conflicts(store):
    with store.begin() as conn:
        assert ensure_domain(conn, "github", "vllm-project/vllm") == "vllm"
        add_domain(conn, "llm", ["github:ggml-org/llama.cpp"])
        with pytest.raises(DomainError, match="already belongs"):
            assign_source(conn, "llm", "github", "vllm-project/vllm")
        with pytest.raises(DomainError, match="choose one with --domain"):
            resolve_domain(conn, None)
        assert resolve_domain(conn, "llm").sources == ("github:ggml-org/llama.cpp",)
        with pytest.raises(DomainError, match="not a domain name"):
            add_domain(conn, "Bad Name")
    with pytest.raises(DomainError, match="OWNER/REPO"):
        parse_source("github:nonsense")


def test_status_counts_issues_and_prs_per_repo(store):
    with store.begin() as conn:
        upsert_issues(conn, [make_issue(1), make_issue(2, is_pull_request=True)])
        upsert_issues(conn, [make_issue(1, repo="a/b")])
        conn.execute(
            schema.domains.insert().values(name="x", created_at=T0)
        )  # a domain with no source still lists
    status = store.status()
    assert status["issues"] == 2 and status["pull_requests"] == 1 and status["comments"] == 0
    assert [(r["repo"], r["issues"], r["pull_requests"]) for r in status["repos"]] == [
        ("a/b", 1, 0),
        ("o/r", 1, 1),
    ]
    assert status["database"].startswith("sqlite:///")


def test_reopening_the_store_keeps_data(store):
    with store.begin() as conn:
        upsert_issues(conn, [make_issue(1)])
    store.close()
    again = open_store()
    with again.begin() as conn:
        assert conn.execute(select(schema.issues.c.number)).scalars().all() == [1]
    again.close()
