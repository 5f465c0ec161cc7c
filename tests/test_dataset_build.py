"""Building datasets from the real dumps: counts, windows, contract, immutability, no leaks."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from adaptune.dataset.artifacts import iter_examples, read_manifest
from adaptune.dataset.build import BuildConfig
from adaptune.dataset.dedupe import has_near_copy
from adaptune.ingest import ingest
from adaptune.ingest.files import file_source
from adaptune.pipeline import build_dataset
from conftest import shared_file

DATASETS = "github/huggingface-datasets.issues.jsonl.gz"
SECRETS = {
    "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8": "<GITHUB_TOKEN>",
    "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz01234567": "<HF_TOKEN>",
    "jane.doe" + "@example.org": "<EMAIL>",
}


@pytest.fixture(scope="module")
def datasets_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The full huggingface/datasets dump, with secrets planted in a fixing PR, built once."""
    src = shared_file(DATASETS)
    home = tmp_path_factory.mktemp("home")
    planted = home.parent / "planted.jsonl"
    with gzip.open(src, "rt", encoding="utf-8") as fh, planted.open("w") as out:
        for line in fh:
            obj = json.loads(line)
            if obj.get("pull_request") and "Fix #" in (obj.get("body") or "")[:200]:
                extra = " ".join(SECRETS)
                obj["body"] = f"{obj['body']}\n\nmy token {extra} password=hunter2hunter2"
            out.write(json.dumps(obj) + "\n")
    env = {**os.environ, "ADAPTUNE_HOME": str(home)}
    for args in (["ingest", "file", str(planted)], ["dataset", "build"]):
        subprocess.run(
            [sys.executable, "-m", "adaptune", *args],
            env=env,
            check=True,
            capture_output=True,
            timeout=600,
        )
    return home


def show(home: Path) -> dict:
    env = {**os.environ, "ADAPTUNE_HOME": str(home)}
    proc = subprocess.run(
        [sys.executable, "-m", "adaptune", "dataset", "show", "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(proc.stdout)


def test_full_dump_gives_hundreds_of_qa_pairs_in_windows(datasets_home: Path) -> None:
    data = show(datasets_home)
    assert set(data) >= {"build", "tasks", "rejected"}
    qa = data["tasks"]["qa"]
    assert 550 <= qa["total"] <= 800, qa["total"]
    assert len(qa["windows"]) >= 3
    for w in qa["windows"]:
        assert set(w) == {"name", "start", "end", "train", "heldout"}
    assert sum(w["train"] + w["heldout"] for w in qa["windows"]) == qa["total"]
    assert set(data["tasks"]) == {"qa", "triage", "duplicates"}
    assert data["tasks"]["triage"]["labels"]["bug"] > 100
    assert "stale" not in data["tasks"]["triage"]["labels"]
    for reason in ("no_solution", "empty"):
        assert data["rejected"].get(reason, 0) > 0


def test_planted_secrets_never_leave_the_raw_store(datasets_home: Path) -> None:
    hits = []
    for path in datasets_home.rglob("*"):
        if not path.is_file() or path.name.startswith("adaptune.db"):
            continue
        text = path.read_bytes()
        hits += [(path.name, s) for s in [*SECRETS, "hunter2hunter2"] if s.encode() in text]
    assert hits == []
    folder = next((datasets_home / "datasets").glob("*/*/"))
    answers = " ".join(e.answer for e in iter_examples(folder, "qa"))
    assert "<GITHUB_TOKEN>" in answers and "<EMAIL>" in answers


def test_heldout_has_no_near_copy_in_training(datasets_home: Path) -> None:
    folder = next((datasets_home / "datasets").glob("*/*/"))
    rows = list(iter_examples(folder, "qa"))
    train = [e.question for e in rows if e.split == "train"]
    held = [e.question for e in rows if e.split == "heldout"]
    assert held and not has_near_copy(held, train).any()
    assert all(e.answer.strip() and e.solution_source == "pr" for e in rows)
    times = [e.known_at for e in rows]
    assert times == sorted(times)  # stored in window order


def test_rebuilding_the_same_data_gives_the_same_immutable_build(store, tmp_path) -> None:
    ingest(file_source(shared_file(DATASETS)), store)
    first = build_dataset(store, config=BuildConfig(window="quarter"))
    stamp = (first.path / "qa.jsonl").stat().st_mtime_ns
    again = build_dataset(store, config=BuildConfig(window="quarter"))
    assert again.build_id == first.build_id
    assert (again.path / "qa.jsonl").stat().st_mtime_ns == stamp
    monthly = build_dataset(store, config=BuildConfig(window="month", heldout=0.1))
    assert monthly.build_id != first.build_id
    assert len(read_manifest(monthly.path)["tasks"]["qa"]["windows"]) > 10


@pytest.mark.parametrize(
    "name", ["github/vllm.issues-sample.jsonl.gz", "github/llama.cpp.issues-sample.jsonl.gz"]
)
def test_samples_without_fixes_still_build_triage(store, name) -> None:
    ingest(file_source(shared_file(name)), store)
    result = build_dataset(store)
    assert result.manifest["tasks"]["qa"]["total"] == 0
    assert result.manifest["tasks"]["triage"]["total"] > 200
    labels = result.manifest["tasks"]["triage"]["labels"]
    assert "stale" not in labels and "bug" in labels


def _row(number: int, title: str, body: str, **kw: object) -> dict:
    row = {
        "number": number,
        "title": title,
        "body": body,
        "state": "closed",
        "created_at": f"2022-0{1 + number % 8}-01T00:00:00Z",
        "closed_at": f"2022-0{1 + number % 8}-03T00:00:00Z",
        "html_url": f"https://github.com/o/r/issues/{number}",
        "labels": [{"name": "bug"}],
    }
    row.update(kw)
    return row


def test_duplicate_pairs_come_from_body_or_comments_with_hard_negatives(store, tmp_path):
    from adaptune.ingest.gh_export import gh_export_source

    text = "load_dataset fails with FileNotFoundError when the cache dir is on a network drive"
    rows = [_row(n, f"Loading fails {n}", f"{text} variant {n} " * 3) for n in range(1, 7)]
    rows.append(_row(7, "Same crash again", "Duplicate of #2\n" + text))
    path = tmp_path / "issues.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ingest(file_source(path), store)
    export = tmp_path / "gh.json"
    comment = {
        "id": "IC_1",
        "author": {"login": "m"},
        "authorAssociation": "MEMBER",
        "body": "Duplicate of #3",
        "createdAt": "2022-06-01T00:00:00Z",
    }
    export.write_text(
        json.dumps(
            [
                {
                    "number": 8,
                    "title": "Crash on network drive",
                    "body": text + " with details",
                    "labels": [],
                    "state": "CLOSED",
                    "createdAt": "2022-05-01T00:00:00Z",
                    "closedAt": "2022-06-01T00:00:00Z",
                    "author": {"login": "u"},
                    "comments": [comment],
                    "url": "https://github.com/o/r/issues/8",
                }
            ]
        )
    )
    ingest(gh_export_source(export), store)
    result = build_dataset(store, config=BuildConfig(heldout=0.0))
    dups = {e.issue: e for e in result.examples["duplicates"]}
    assert dups["github:o/r#7"].meta["canonical"] == "github:o/r#2"
    assert dups["github:o/r#8"].meta["canonical"] == "github:o/r#3"
    negatives = dups["github:o/r#7"].meta["negatives"]
    assert negatives and "github:o/r#2" not in negatives


def test_export_and_sample_commands(datasets_home: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    env = {**os.environ, "ADAPTUNE_HOME": str(datasets_home)}

    def cli(*args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "adaptune", *args],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    data = show(datasets_home)
    first = data["tasks"]["qa"]["windows"][0]["name"]
    out = tmp_path / "qa.jsonl"
    cli("dataset", "export", "--to", str(out), "--task", "qa", "--window", first)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and {r["window"] for r in rows} == {first}
    pq_out = tmp_path / "triage.parquet"
    cli("dataset", "export", "--to", str(pq_out), "--format", "parquet", "--task", "triage")
    assert pq.read_table(pq_out).num_rows == data["tasks"]["triage"]["total"]
    text = cli("dataset", "sample", "--task", "qa", "-n", "2")
    assert text.count("question") == 2 and "answer" in text
