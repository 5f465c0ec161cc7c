"""The similar-issue index over a domain's stored issues, with the real sentence embeddings."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from adaptune.memory import default_embedder
from adaptune.memory.issues import IssueIndex, index_path, load_or_build_index
from adaptune.pipeline import build_dataset
from adaptune.store.domains import add_domain
from adaptune.store.issues import upsert_issues
from adaptune.types import Issue

T0 = datetime(2022, 3, 1, tzinfo=UTC)
TITLES = [
    "load_dataset raises KeyError 'train' when the split is missing",
    "pyarrow ArrowInvalid when casting a nested list column in map",
    "push_to_hub fails with a 403 error for a private organisation",
    "Streaming a parquet dataset from S3 hangs forever",
    "Add support for writing datasets to the Lance format",
]


def issue(number: int, title: str, when: datetime = T0, **kw: object) -> Issue:
    fields = {
        "source": "github",
        "repo": "o/r",
        "number": number,
        "title": title,
        "body": f"{title}. I see it every time with python 3.11 on linux, please help.",
        "state": "open",
        "created_at": when,
        "updated_at": when,
        "url": f"https://github.com/o/r/issues/{number}",
    }
    fields.update(kw)
    return Issue(**fields)  # type: ignore[arg-type]


def put(store, issues: list[Issue]) -> None:
    with store.begin() as conn:
        upsert_issues(conn, issues)


@pytest.fixture
def filled(store):
    with store.begin() as conn:
        add_domain(conn, "d", ["github:o/r"])
    put(store, [issue(i + 1, t) for i, t in enumerate(TITLES)])
    pr = issue(99, "Fix KeyError train split in load_dataset", is_pull_request=True)
    put(store, [pr])
    return store


def numbers(hits: list[dict]) -> list[int]:
    return [h["number"] for h in hits]


def test_search_finds_the_most_similar_issue_and_respects_exclude(filled, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="adaptune.memory"):
        index = load_or_build_index(filled, "d", default_embedder())
    assert "built the similar-issue index of d from 5 stored issues" in caplog.text
    assert len(index) == 5  # the pull request is not indexed
    hits = index.search("KeyError: 'train' split missing in load_dataset", k=3)
    assert numbers(hits)[0] == 1 and len(hits) == 3
    assert hits[0]["score"] > hits[1]["score"] >= hits[2]["score"]
    assert set(hits[0]) == {
        "number",
        "title",
        "url",
        "score",
        "state",
        "solution",
        "source",
        "repo",
    }
    assert hits[0]["url"] == "https://github.com/o/r/issues/1" and hits[0]["solution"] is None
    excluded = index.search("KeyError 'train' split missing", k=2, exclude=[("github", "o/r", 1)])
    assert 1 not in numbers(excluded) and len(excluded) == 2
    assert len(index.search("anything", k=50)) == 5


def test_duplicate_of_needs_a_score_over_the_threshold(filled) -> None:
    index = load_or_build_index(filled, "d", default_embedder())
    hits = index.search(f"Title: {TITLES[3]}", k=3)
    assert index.duplicate_of(hits, threshold=hits[0]["score"] - 1e-6) == 4
    assert index.duplicate_of(hits, threshold=hits[0]["score"] + 1e-3) is None
    assert index.duplicate_of([], threshold=0.0) is None


def test_update_replaces_an_issue_text(filled) -> None:
    index = load_or_build_index(filled, "d", default_embedder())
    query = "CUDA out of memory on a GPU when tokenizing with num_proc"
    assert numbers(index.search(query, k=1)) != [5]
    changed = issue(5, "CUDA out of memory on the GPU when tokenizing with num_proc=8")
    index.update([changed])
    assert len(index) == 5
    top = index.search(query, k=1)[0]
    assert top["number"] == 5 and top["title"] == changed.title


def test_refresh_takes_only_issues_changed_since_the_last_one(filled) -> None:
    index = load_or_build_index(filled, "d", default_embedder())
    assert index.refresh(filled) == 0
    later = T0 + timedelta(days=3)
    put(filled, [issue(2, "Memory leak in map over image columns", later), issue(6, "New", later)])
    put(filled, [issue(3, TITLES[2], T0)])  # same version again: the store keeps it unchanged
    assert index.refresh(filled) == 2
    assert index.refresh(filled) == 0
    assert len(index) == 6
    assert numbers(index.search("memory leak with image columns in map", k=1)) == [2]


def test_save_and_load_round_trip(filled) -> None:
    index = load_or_build_index(filled, "d", default_embedder())
    assert index_path(filled.settings.home, "d").exists()
    query = "upload to the hub is forbidden for my organisation"
    again = IssueIndex.load(filled.settings.home, "d", default_embedder())
    assert len(again) == len(index) and again.cursor == index.cursor
    assert again.search(query, k=5) == index.search(query, k=5)
    put(filled, [issue(7, "Tokenizer warning about fork after parallelism", T0)])
    reloaded = load_or_build_index(filled, "d", default_embedder())
    assert len(reloaded) == 6  # the saved index was refreshed with the new issue


def test_concurrent_search_and_update_do_not_crash(filled) -> None:
    index = load_or_build_index(filled, "d", default_embedder())
    errors: list[BaseException] = []

    def searching() -> None:
        try:
            for _ in range(40):
                hits = index.search("KeyError train split", k=3)
                assert hits and all(h["number"] > 0 for h in hits)
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)

    def updating() -> None:
        try:
            for n in range(10, 50):
                index.update([issue(n, f"Issue {n}: cache folder {n} fills the disk")])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=f) for f in (searching, searching, updating)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(index) == 45


def test_solution_comes_from_the_latest_build(filled) -> None:
    fixed = replace(
        issue(1, TITLES[0], T0, state="closed", closed_at=T0 + timedelta(days=1)),
        updated_at=T0 + timedelta(days=1),
    )
    pr = issue(
        100,
        "Fix KeyError when the train split is missing",
        T0 + timedelta(days=1),
        body="Fixes #1. load_dataset now falls back to the first split and warns.",
        state="closed",
        is_pull_request=True,
        merged_at=T0 + timedelta(days=1),
        closed_at=T0 + timedelta(days=1),
    )
    put(filled, [fixed, pr])
    index = load_or_build_index(filled, "d", default_embedder())
    assert index.search(TITLES[0], k=1)[0]["solution"] is None
    qa = build_dataset(filled, "d").examples["qa"]
    assert [e.issue for e in qa] == ["github:o/r#1"]
    index.refresh(filled)  # a newer build: its fixes reach the payloads
    top = index.search(TITLES[0], k=1)[0]
    assert top["number"] == 1 and "falls back to the first split" in top["solution"]
    again = IssueIndex.load(filled.settings.home, "d", default_embedder())
    assert again.search(TITLES[0], k=1)[0]["solution"] == top["solution"]


@pytest.mark.e2e
def test_build_and_refresh_on_postgres(workspace) -> None:
    import uuid

    from adaptune.config import load_settings
    from adaptune.store import open_store
    from pg_cluster import cluster, fresh_database, unavailable_reason

    if reason := unavailable_reason():
        pytest.skip(reason)
    with cluster() as admin:
        store = open_store(
            load_settings(database_url=fresh_database(admin, f"t_{uuid.uuid4().hex[:12]}"))
        )
        try:
            with store.begin() as conn:
                add_domain(conn, "d", ["github:o/r"])
            put(store, [issue(i + 1, t) for i, t in enumerate(TITLES)])
            index = load_or_build_index(store, "d", default_embedder())
            assert len(index) == 5 and index.refresh(store) == 0
            put(store, [issue(2, "Memory leak in map over image columns", T0 + timedelta(days=1))])
            assert index.refresh(store) == 1
            assert numbers(index.search("memory leak with image columns", k=1)) == [2]
        finally:
            store.close()


def test_search_results_never_carry_a_secret_in_clear(store):
    from adaptune.memory.embed import default_embedder
    from adaptune.memory.issues import load_or_build_index
    from adaptune.store.domains import ensure_domain
    from adaptune.store.issues import upsert_issues
    from adaptune.types import Issue

    token = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
    now = datetime(2024, 1, 1, tzinfo=UTC)
    issue = Issue("github", "o/r", 1, f"token {token} leaks", "body", "open", now, now)
    with store.begin() as conn:
        ensure_domain(conn, "github", "o/r")
        upsert_issues(conn, [issue])
    index = load_or_build_index(store, "r", default_embedder())
    hits = index.search("token leaks", k=1)
    assert hits and token not in str(hits)
