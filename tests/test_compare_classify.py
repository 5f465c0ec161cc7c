"""``compare``'s triage and duplicate measurements: numbers checked by hand, then a tiny build
measured end to end and rendered into the report."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from adaptune.cli.summary import classify_lines
from adaptune.dataset import BuildConfig
from adaptune.evaluate.classify import (
    classify_measurements,
    classify_verdict,
    compared_span,
    measure_duplicates,
    measure_triage,
    rank_earlier,
    score_duplicates,
    score_triage,
)
from adaptune.evaluate.plots import fmt3
from adaptune.evaluate.report import render_report
from adaptune.ingest import ingest
from adaptune.ingest.files import file_source
from adaptune.memory.issues import DUPLICATE_THRESHOLD
from adaptune.pipeline import build_dataset
from adaptune.types import Example, Issue
from test_eval_scoring import WordEmbedder

T0 = datetime(2022, 1, 3, tzinfo=UTC)


def test_perfect_classifier_beside_a_majority_baseline() -> None:
    y = ["bug", "bug", "feature", "feature", "usage"]
    got = score_triage(y, y, ["bug"] * 5, seed=0)
    assert got["accuracy"] == 1.0 and got["accuracy_ci"] == [1.0, 1.0, 1.0]
    assert got["macro_f1"] == 1.0
    assert got["labels"] == ["bug", "feature", "usage"]
    assert got["confusion"] == [[2, 0, 0], [0, 2, 0], [0, 0, 1]]
    base = got["baseline"]
    assert base["accuracy"] == pytest.approx(0.4)
    # bug: 2·2 / (2·2 + 3 false positives) = 4/7; feature and usage never predicted: 0
    assert base["macro_f1"] == pytest.approx(4 / 21)
    mean, lo, hi = got["minus_baseline"]["accuracy"]
    assert mean == pytest.approx(0.6) and 0.0 <= lo <= mean <= hi <= 1.0


def test_a_label_only_predicted_is_wrong_and_in_no_column() -> None:
    got = score_triage(["a", "a", "b"], ["a", "zzz", "b"], ["a", "a", "a"])
    assert got["labels"] == ["a", "b"]
    assert got["confusion"] == [[1, 0], [0, 1]]  # the "zzz" row is counted wrong, shown nowhere
    assert got["accuracy"] == pytest.approx(2 / 3)
    assert got["accuracy_ci"][1] <= 2 / 3 <= got["accuracy_ci"][2]


def test_duplicate_recall_and_duplicate_of_by_hand() -> None:
    truth = ["o#1", "o#2", "o#3", "o#4"]
    ranked = [
        ["o#1", "o#9"],  # first
        ["o#9", "o#8", "o#7", "o#6", "o#2"],  # fifth
        [f"o#{n}" for n in range(10, 19)] + ["o#3"],  # tenth
        ["o#9"],  # not found
    ]
    best = [0.95, 0.99, 0.5, None]
    got = score_duplicates(ranked, truth, best)
    assert got["pairs"] == 4
    assert got["recall_at_k"] == {"1": 0.25, "5": 0.5, "10": 0.75}
    assert [got["recall_ci"][k][0] for k in ("1", "5", "10")] == [0.25, 0.5, 0.75]
    # only the first pair has the original as its best hit at or above the threshold
    assert DUPLICATE_THRESHOLD <= 0.95
    assert got["duplicate_of"]["rate"][0] == 0.25


def issue(number: int, title: str, days: int, body: str = "") -> Issue:
    when = T0 + timedelta(days=days)
    text = body or f"{title}. It happens every time on linux with python 3.11, please help."
    return Issue("github", "o/r", number, title, text, "open", when, when)


def test_search_only_sees_issues_filed_before_the_duplicate() -> None:
    original = issue(1, "load_dataset raises KeyError train split missing", 0)
    other = issue(2, "push_to_hub fails with a 403 for a private organisation", 1)
    dup = issue(3, "load_dataset raises KeyError when the train split is missing", 5)
    copy = issue(4, dup.title, 9, dup.body)  # a later exact copy would otherwise rank first
    issues = [copy, dup, other, original]
    [(refs, best)] = rank_earlier([(dup, original)], issues, WordEmbedder(), 10)
    assert refs == ["github:o/r#1", "github:o/r#2"]
    assert best is not None and 0 < best < 1


def dup_example(dup: Issue, original_ref: str) -> Example:
    return Example(
        id=f"duplicates:github:o/r#{dup.number}",
        task="duplicates",
        domain="d",
        issue=f"github:o/r#{dup.number}",
        question=dup.title,
        answer="",
        known_at=dup.created_at,
        meta={"canonical": original_ref},
    )


def test_duplicate_pairs_that_cannot_be_searched_are_counted_apart() -> None:
    a = issue(1, "streaming a parquet dataset from s3 hangs forever", 0)
    b = issue(2, "streaming parquet from s3 hangs forever with no error", 3)
    c = issue(3, "add support for writing datasets to the lance format", 4)
    examples = [
        dup_example(b, "github:o/r#1"),  # searchable
        dup_example(a, "github:o/r#3"),  # its "original" came later
        dup_example(c, "github:o/r#77"),  # the original is not stored
    ]
    got = measure_duplicates(examples, [a, b, c], WordEmbedder())
    assert got["pairs"] == 1 and got["later_original"] == 1 and got["not_stored"] == 1
    assert got["recall_at_k"]["1"] == 1.0
    none = measure_duplicates([], [a, b], WordEmbedder())
    assert none == {
        "pairs": 0,
        "later_original": 0,
        "not_stored": 0,
        "skipped": "the build has no duplicate pairs",
    }


PHRASES = {
    "bug": "{a} crashes with a traceback and KeyError {n} when calling {b} on the shard",
    "feature": "please add support for a new {a} option in {b}, a feature request {n}",
    "usage": "how do I configure {a} together with {b}, what is the right way {n}",
}
WORDS = "cache split arrow stream token column parquet audio image batch map filter".split()  # noqa: SIM905


def triage_examples(n: int = 30) -> list[Example]:
    """Labelled questions a day apart; every third is held out."""
    out = []
    for i in range(n):
        label = list(PHRASES)[i % 3]
        text = PHRASES[label].format(a=WORDS[i % 12], b=WORDS[(i * 5 + 1) % 12], n=i)
        out.append(
            Example(
                id=f"triage:github:o/r#{i}",
                task="triage",
                domain="d",
                issue=f"github:o/r#{i}",
                question=f"Title: {text}",
                answer=label,
                known_at=T0 + timedelta(days=i),
                split="heldout" if i % 4 == 3 else "train",
            )
        )
    return out


def test_triage_trains_on_earlier_train_examples_only() -> None:
    rows = triage_examples()
    after, before = T0 + timedelta(days=9.5), T0 + timedelta(days=25.5)
    got = measure_triage(rows, (after, before), WordEmbedder())
    assert got["train"] == sum(1 for e in rows if e.split == "train" and e.known_at < before)
    assert got["heldout"] == sum(
        1 for e in rows if e.split == "heldout" and after < e.known_at < before
    )
    assert sum(map(sum, got["confusion"])) == got["heldout"] == 4
    assert got["accuracy"] == 1.0  # the label phrases separate the classes
    assert got["name"].startswith("adaptune triage")
    none_held = measure_triage(rows, (T0 + timedelta(days=40), None), WordEmbedder())
    assert none_held["skipped"] == "no held-out triage examples in the compared windows"
    one_label = [e for e in rows if e.answer == "bug"]
    assert "too few" in measure_triage(one_label, (None, None), WordEmbedder())["skipped"]


def tracker_rows() -> list[dict]:
    """36 solved, labelled issues over three quarters of 2022 with their fixing PRs, and two
    issues in the last quarter marked ``Duplicate of`` an earlier one."""
    labels = {"bug": "bug", "feature": "enhancement", "usage": "question"}
    out = []
    for n in range(1, 37):
        month = 1 + (n - 1) // 12 * 3
        label = list(PHRASES)[n % 3]
        text = PHRASES[label].format(a=WORDS[n % 12], b=WORDS[(n * 5 + 1) % 12], n=n)
        common = {
            "state": "closed",
            "created_at": f"2022-{month:02d}-{1 + n % 12:02d}T00:00:00Z",
            "closed_at": f"2022-{month:02d}-{15 + n % 12:02d}T00:00:00Z",
        }
        out.append(
            {
                **common,
                "number": n,
                "title": text[:60],
                "body": f"{text}. Seen with python 3.11 on linux, version {n}.",
                "html_url": f"https://github.com/o/r/issues/{n}",
                "labels": [{"name": labels[label]}],
            }
        )
        out.append(
            {
                **common,
                "number": 500 + n,
                "title": f"Fix case {n}",
                "body": f"Fixes #{n}. Check {WORDS[n % 12]} before reading shard {n}.",
                "html_url": f"https://github.com/o/r/pull/{500 + n}",
                "labels": [],
                "pull_request": {"merged_at": common["closed_at"]},
            }
        )
    for number, original in ((90, 4), (91, 17)):
        text = PHRASES[list(PHRASES)[original % 3]].format(
            a=WORDS[original % 12], b=WORDS[(original * 5 + 1) % 12], n=original
        )
        out.append(
            {
                "number": number,
                "title": f"Again: {text[:50]}",
                "body": f"I still see this: {text}. Duplicate of #{original}",
                "state": "closed",
                "created_at": "2022-09-28T00:00:00Z",
                "closed_at": "2022-09-29T00:00:00Z",
                "html_url": f"https://github.com/o/r/issues/{number}",
                "labels": [],
            }
        )
    return out


def test_tiny_build_measured_end_to_end_into_the_report(store, tmp_path, workspace) -> None:
    path = tmp_path / "issues.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in tracker_rows()))
    ingest(file_source(path), store)
    result = build_dataset(store, config=BuildConfig(heldout=0.3))
    windows = [w["name"] for w in result.manifest["tasks"]["qa"]["windows"]]
    assert windows == ["2022Q1", "2022Q2", "2022Q3"]
    domain = result.manifest["config"]["domain"]
    metrics = classify_measurements(store, domain, result.build_id, windows[1:], seed=0)

    triage = metrics["triage"]
    held = [
        e
        for e in result.examples["triage"]
        if e.split == "heldout" and e.window in ("2022Q2", "2022Q3")
    ]
    assert triage["heldout"] == len(held) > 0
    assert triage["train"] == sum(1 for e in result.examples["triage"] if e.split == "train")
    assert triage["labels"] == sorted({e.answer for e in held})
    trace = sum(triage["confusion"][i][i] for i in range(len(triage["labels"])))
    assert triage["accuracy"] == pytest.approx(trace / len(held))
    lo, hi = triage["accuracy_ci"][1:]
    assert lo <= triage["accuracy"] <= hi
    assert 0 <= triage["baseline"]["accuracy"] <= 1

    span = compared_span(result.path, windows[:2])  # Q3 lies after: never trained on
    assert span == (datetime(2022, 1, 1, tzinfo=UTC), datetime(2022, 7, 1, tzinfo=UTC))
    early = measure_triage(result.examples["triage"], span, WordEmbedder())
    assert early["train"] == sum(
        1 for e in result.examples["triage"] if e.split == "train" and e.window != "2022Q3"
    )
    counted = build_dataset(store, config=BuildConfig(window="12", heldout=0.3))
    qa_windows = counted.manifest["tasks"]["qa"]["windows"]
    starts = [datetime.fromisoformat(w["start"]) for w in qa_windows]
    assert len(starts) == 3  # 36 fixes, 12 per window
    assert compared_span(counted.path, ["w002"]) == (starts[1], starts[2])
    assert compared_span(counted.path, ["w002", "w003"]) == (starts[1], None)

    dups = metrics["duplicates"]
    assert dups["pairs"] == 2 and dups["later_original"] == 0
    assert dups["recall_at_k"]["10"] == 1.0  # a reworded copy is among the first ten
    assert dups["candidates"] == 38
    assert not (workspace / "indexes").exists()  # the measurement saved no index

    metrics["verdict"] = classify_verdict(metrics)
    assert any(line.startswith("the triage classifier is") for line in metrics["verdict"])
    html = render_report(metrics, tmp_path / "report").read_text(encoding="utf-8")
    section = re.search(r'<section id="triage">.*?</section>', html, re.S).group(0)
    assert fmt3(triage["accuracy"]) in section and fmt3(triage["macro_f1"]) in section
    assert f"[{fmt3(lo)}, {fmt3(hi)}]" in section
    assert "triage confusion matrix" in section and "not measured" not in section
    section = re.search(r'<section id="duplicates">.*?</section>', html, re.S).group(0)
    assert "(2 pairs)" in section and "not measured" not in section
    lines = classify_lines(metrics)
    assert lines[0].startswith(f"triage: accuracy {triage['accuracy']:.3f} [")
    assert lines[1].startswith("duplicates: recall@5 ") and lines[1].endswith("over 2 pairs")


def test_report_and_summary_say_why_a_part_was_skipped(tmp_path) -> None:
    metrics = {
        "triage": {"train": 4, "heldout": 0, "skipped": "no held-out triage examples"},
        "duplicates": {"pairs": 0, "skipped": "the build has no duplicate pairs"},
    }
    html = render_report(metrics, tmp_path).read_text(encoding="utf-8")
    assert "not measured: no held-out triage examples" in html
    assert "not measured: the build has no duplicate pairs" in html
    assert classify_lines(metrics) == [
        "triage: not measured (no held-out triage examples)",
        "duplicates: not measured (the build has no duplicate pairs)",
    ]
    assert classify_verdict(metrics) == []
