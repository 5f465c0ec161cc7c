"""Feedback → qa examples: corrections and accepted answers, scrubbed, in the dataset build."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adaptune.dataset.artifacts import iter_examples
from adaptune.dataset.windows import is_heldout
from adaptune.feedback.examples import feedback_examples
from adaptune.ingest import ingest
from adaptune.ingest.files import file_source
from adaptune.pipeline import build_dataset
from adaptune.store import Store, schema
from test_pipeline_train import rows

TOKEN = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z5A"  # a fake token of the real shape


def when(month: int, day: int) -> datetime:
    return datetime(2022, month, day, tzinfo=UTC)


def ticket(store: Store, title: str, body: str, answer: str | None, domain: str = "r") -> str:
    tid = str(uuid.uuid4())
    with store.begin() as conn:
        conn.execute(
            schema.tickets.insert().values(
                id=tid,
                domain=domain,
                title=title,
                body=body,
                labels='["bug"]',
                similar="[]",
                answer=json.dumps({"text": answer, "adapter_version": "r-v1"}) if answer else None,
                adapter_version="r-v1",
                arm="production",
                created_at=when(4, 2),
            )
        )
    return tid


def rate(store: Store, tid: str, at: datetime, rating: str, **extra: object) -> None:
    domain = "other" if extra.pop("other", False) else "r"
    with store.begin() as conn:
        conn.execute(
            schema.feedback.insert().values(
                ticket_id=tid,
                domain=domain,
                rating=rating,
                corrected_answer=extra.get("corrected"),
                resolved=extra.get("resolved"),
                adapter_version="r-v1",
                arm="production",
                created_at=at,
            )
        )


def ingest_rows(store: Store, tmp_path: Path) -> Store:
    """``store`` with 18 solved issues of 2022 and their fixing PRs."""
    path = tmp_path / "issues.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows()))
    ingest(file_source(path), store)
    return store


@pytest.fixture
def ingested(store: Store, tmp_path: Path) -> Store:
    return ingest_rows(store, tmp_path)


def planted(store: Store) -> dict[str, str]:
    """Five tickets whose feedback teaches (or does not) in every way there is."""
    t = {
        "corrected": ticket(
            store,
            "Streaming parquet shards hangs forever",
            f"I set HF_TOKEN={TOKEN} and iterate the stream; it never ends.",
            "Restart the kernel.",
        ),
        # Ticket and answer long enough for the quality gate (8 and 4 words), like an issue's.
        "accepted": ticket(
            store,
            "Audio column decode fails",
            "Decoding audio raises an error.",
            "Install the soundfile package.",
        ),
        "down": ticket(store, "Image feature is slow", "Casting images takes hours.", "Buy RAM."),
        "overruled": ticket(store, "Arrow cache grows", "The cache never shrinks.", "Delete it."),
        "unresolved": ticket(store, "Token column vanishes", "After map it is gone.", "Use map."),
    }
    rate(store, t["corrected"], when(4, 3), "down")
    rate(store, t["corrected"], when(5, 10), "down", corrected=f"Pass {TOKEN}? No: set timeout=30.")
    rate(store, t["accepted"], when(8, 1), "up", resolved=True)
    rate(store, t["down"], when(5, 1), "down")
    rate(store, t["overruled"], when(4, 5), "down", corrected="Call cleanup_cache_files().")
    rate(store, t["overruled"], when(4, 6), "down")  # the latest feedback wins
    rate(store, t["unresolved"], when(4, 7), "up", resolved=False)
    other = ticket(store, "Elsewhere", "Another domain.", "No.", domain="other")
    rate(store, other, when(4, 8), "down", corrected="Not for r.", other=True)
    return t


def test_corrections_and_accepted_answers_become_scrubbed_examples(ingested: Store) -> None:
    t = planted(ingested)
    examples = {e.id: e for e in feedback_examples(ingested, "r")}
    corrected, accepted = f"qa:feedback:{t['corrected']}", f"qa:feedback:{t['accepted']}"
    assert set(examples) == {corrected, accepted}
    fix = examples[corrected]
    assert fix.answer == "Pass <GITHUB_TOKEN>? No: set timeout=30."
    assert fix.question.startswith("Title: Streaming parquet shards hangs forever")
    assert TOKEN not in fix.question and "<GITHUB_TOKEN>" in fix.question
    assert fix.known_at == when(5, 10) and fix.solution_source == "feedback"
    assert fix.meta["feedback"] == "corrected" and fix.meta["ticket_id"] == t["corrected"]
    assert fix.task == "qa" and fix.domain == "r" and fix.issue == f"feedback:{t['corrected']}"
    ok = examples[accepted]
    assert ok.answer == "Install the soundfile package." and ok.meta["feedback"] == "accepted"
    assert ok.known_at == when(8, 1) and ok.meta["labels"] == ["bug"]


def test_feedback_lands_in_the_build_and_changes_its_hash(ingested: Store) -> None:
    before = build_dataset(ingested)
    t = planted(ingested)
    after = build_dataset(ingested)
    assert after.build_id != before.build_id
    qa = {e.id: e for e in iter_examples(after.path, "qa")}
    fix = qa[f"qa:feedback:{t['corrected']}"]
    assert fix.solution_source == "feedback" and fix.window == "2022Q2"
    assert fix.split == ("heldout" if is_heldout(fix.issue, 0.2) else "train")  # same rule
    assert qa[f"qa:feedback:{t['accepted']}"].window == "2022Q3"
    issues = [e for e in qa.values() if e.solution_source != "feedback"]
    assert len(issues) == len([e for e in iter_examples(before.path, "qa")])
    assert after.manifest["tasks"]["qa"]["total"] == len(qa)
    for file in after.path.iterdir():
        assert TOKEN not in file.read_text(), file.name
    assert build_dataset(ingested).build_id == after.build_id  # nothing new: the same build


@pytest.mark.e2e
def test_feedback_examples_on_postgres(workspace, tmp_path: Path) -> None:
    from adaptune.config import load_settings
    from adaptune.store import open_store
    from pg_cluster import cluster, fresh_database, unavailable_reason

    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with cluster() as admin:
        pg = open_store(load_settings(database_url=fresh_database(admin, "t_feedback")))
        try:
            t = planted(ingest_rows(pg, tmp_path))
            ids = {e.id for e in feedback_examples(pg, "r")}
            assert ids == {f"qa:feedback:{t['corrected']}", f"qa:feedback:{t['accepted']}"}
        finally:
            pg.close()
