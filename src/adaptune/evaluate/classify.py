"""Scoring the service's classifiers: triage and the duplicate search, as ``compare`` reports them.

Triage: the service's classifier (:func:`adaptune.triage.train_triage`, as every dataset build
trains it) and the baseline of :mod:`adaptune.triage.baseline`, both trained on the build's
*train*-split triage examples known before the end of the compared windows (nothing later, no
held-out example), scored on the held-out triage examples inside the compared windows with
:func:`adaptune.triage.scores.triage_scores`. The compared windows are the qa windows of
``compare``; a triage example (known when its issue was filed) belongs to them by time
(:func:`compared_span`): a quarter or month is its calendar period, a window of N examples runs
from its first fix to the next window's first fix.

Duplicates: for every duplicate pair of the build (an issue marked ``Duplicate of #N``), the
duplicate is searched the way the service searches a new ticket (:class:`IssueIndex` over the
domain's stored issues, the ticket's question text) among the issues filed before it;
:func:`recall_at_k` is the share of pairs whose original is among the first ``k`` hits. The
search is not trained, so every pair of the build counts. Pairs whose "original" was filed after
the duplicate cannot be found this way and are counted apart.

Means come with 95 % bootstrap intervals ``[mean, lo, hi]``; a part that cannot be measured
says why under ``skipped``.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from adaptune.dataset.artifacts import find_build, iter_examples, read_manifest
from adaptune.dataset.tasks import issue_ref
from adaptune.evaluate.metrics import bootstrap_ci, paired_diff_ci
from adaptune.memory.embed import Embedder, default_embedder
from adaptune.memory.issues import DUPLICATE_THRESHOLD, IssueIndex
from adaptune.store import Store
from adaptune.store.domains import resolve_domain
from adaptune.store.issues import select_issues
from adaptune.triage import ticket_question, train_triage
from adaptune.triage.baseline import BASELINE_NAME, fit_baseline
from adaptune.triage.scores import triage_scores
from adaptune.types import Example, Issue

KS = (1, 5, 10)
"""The k of duplicate recall@k."""
Span = tuple[datetime | None, datetime | None]
"""``(start, end)``: the time from ``start`` up to (not including) ``end``; open where ``None``."""


def _ci(values: Sequence[float] | np.ndarray, seed: int) -> list[float]:
    return list(bootstrap_ci(np.asarray(values, dtype=float), seed=seed))


def score_triage(
    y_true: Sequence[str], predicted: Sequence[str], baseline: Sequence[str], seed: int = 0
) -> dict[str, Any]:
    """The report's ``triage`` scores of a classifier's and the baseline's predictions.

    Labels are the true labels seen (as in ``bench/triage.py``): a prediction of another label
    is wrong and appears in no column of the confusion matrix. Accuracy has a bootstrap
    interval over the per-example correctness; ``minus_baseline`` is the paired difference.
    """
    labels = sorted(set(y_true))
    ours = triage_scores(y_true, predicted, labels)
    theirs = triage_scores(y_true, baseline, labels)
    right = [float(t == p) for t, p in zip(y_true, predicted, strict=True)]
    base_right = [float(t == p) for t, p in zip(y_true, baseline, strict=True)]
    return {
        "accuracy": ours["accuracy"],
        "accuracy_ci": _ci(right, seed),
        "macro_f1": ours["macro_f1"],
        "labels": labels,
        "confusion": ours["confusion"],
        "baseline": {
            "name": BASELINE_NAME,
            "accuracy": theirs["accuracy"],
            "accuracy_ci": _ci(base_right, seed),
            "macro_f1": theirs["macro_f1"],
        },
        "minus_baseline": {"accuracy": list(paired_diff_ci(right, base_right, seed=seed))},
    }


def _in(when: datetime, span: Span) -> bool:
    start, end = span
    return (start is None or when >= start) and (end is None or when < end)


def measure_triage(
    examples: Sequence[Example], span: Span, embedder: Embedder, seed: int = 0
) -> dict[str, Any]:
    """Train the service's classifier and the baseline on train-split triage examples known
    before ``span`` ends; score both on the held-out ones inside ``span``."""
    train = [e for e in examples if e.split == "train" and _in(e.known_at, (None, span[1]))]
    held = [e for e in examples if e.split == "heldout" and _in(e.known_at, span)]
    counts = {"train": len(train), "heldout": len(held)}
    if not held:
        return {**counts, "skipped": "no held-out triage examples in the compared windows"}
    model = train_triage(train, embedder, seed=seed, holdout=0)
    if model is None:
        return {
            **counts,
            "skipped": "too few labelled training examples (two labels with two examples each "
            "and six in all are needed)",
        }
    texts = [e.question for e in held]
    predicted = [p["label"] for p in model.predict(texts)]
    baseline = fit_baseline([e.question for e in train], [e.answer for e in train], seed)
    scores = score_triage([e.answer for e in held], predicted, list(baseline.predict(texts)), seed)
    return {**counts, "name": f"adaptune triage ({model.manifest['kind']})", **scores}


def rank_earlier(
    pairs: Sequence[tuple[Issue, Issue]], issues: Sequence[Issue], embedder: Embedder, k: int
) -> list[tuple[list[str], float | None]]:
    """For each (duplicate, original) pair: the refs of the ``k`` issues the service's search
    finds for the duplicate among ``issues`` filed before it, best first, and the best score."""
    ordered = sorted(issues, key=lambda i: i.created_at)
    times = [i.created_at for i in ordered]
    keys = [(i.source, i.repo, i.number) for i in ordered]
    index = IssueIndex("compare", embedder, Path())  # in memory: never saved
    index.update(ordered)
    out = []
    for dup, _original in pairs:
        later = keys[bisect_left(times, dup.created_at) :]  # the duplicate itself included
        hits = index.search(ticket_question(dup.title, dup.body), k=k, exclude=later)
        refs = [f"{h['source']}:{h['repo']}#{h['number']}" for h in hits]
        out.append((refs, hits[0]["score"] if hits else None))
    return out


def recall_at_k(ranked: Sequence[Sequence[str]], truth: Sequence[str], k: int) -> float:
    """Share of queries whose true item is among their first ``k`` ranked items."""
    if len(ranked) != len(truth):
        raise ValueError(f"{len(ranked)} rankings for {len(truth)} true items")
    if k < 1:
        raise ValueError("recall_at_k needs k ≥ 1")
    if not truth:
        return math.nan
    return sum(1 for items, t in zip(ranked, truth, strict=True) if t in items[:k]) / len(truth)


def score_duplicates(
    ranked: Sequence[Sequence[str]],
    truth: Sequence[str],
    best: Sequence[float | None],
    seed: int = 0,
) -> dict[str, Any]:
    """Recall@k for :data:`KS` with intervals, and how often the service's ``duplicate_of``
    (the best hit, when its score reaches the threshold) names the original."""
    hits = {k: [float(t in r[:k]) for r, t in zip(ranked, truth, strict=True)] for k in KS}
    flagged = [
        float(bool(r) and r[0] == t and s is not None and s >= DUPLICATE_THRESHOLD)
        for r, t, s in zip(ranked, truth, best, strict=True)
    ]
    return {
        "pairs": len(truth),
        "recall_at_k": {str(k): recall_at_k(ranked, truth, k) for k in KS},
        "recall_ci": {str(k): _ci(hits[k], seed) for k in KS},
        "duplicate_of": {"threshold": DUPLICATE_THRESHOLD, "rate": _ci(flagged, seed)},
    }


def measure_duplicates(
    examples: Sequence[Example], issues: Sequence[Issue], embedder: Embedder, seed: int = 0
) -> dict[str, Any]:
    """Recall@k of the similar-issue search on the build's duplicate pairs (``examples``)."""
    by_ref = {issue_ref(i): i for i in issues}
    pairs = [
        (by_ref[e.issue], by_ref[e.meta.get("canonical", "")])
        for e in examples
        if e.issue in by_ref and e.meta.get("canonical") in by_ref
    ]
    usable = [(d, o) for d, o in pairs if o.created_at < d.created_at]
    apart = {"later_original": len(pairs) - len(usable), "not_stored": len(examples) - len(pairs)}
    if not usable:
        why = "the build has no duplicate pairs" if not examples else "no pair is searchable"
        return {"pairs": 0, **apart, "skipped": why}
    found = rank_earlier(usable, issues, embedder, max(KS))
    truth = [issue_ref(o) for _d, o in usable]
    scores = score_duplicates([r for r, _s in found], truth, [s for _r, s in found], seed)
    return {**scores, **apart, "candidates": len(issues)}


def _period(name: str, spec: str) -> Span:
    """The start and end of a calendar window (``2022Q3``, ``2022-07``)."""
    year, part = name.split("Q" if spec == "quarter" else "-")
    month, months = (3 * int(part) - 2, 3) if spec == "quarter" else (int(part), 1)
    after = month - 1 + months
    start = datetime(int(year), month, 1, tzinfo=UTC)
    return start, datetime(int(year) + after // 12, after % 12 + 1, 1, tzinfo=UTC)


def compared_span(folder: Path, windows: Sequence[str]) -> Span:
    """The time the compared qa ``windows`` of the build in ``folder`` cover, ``[start, end)``:
    their calendar periods, or for windows of N examples from the first one's start to the
    next window's start (open when the last is the build's last)."""
    manifest = read_manifest(folder)
    spec = manifest["config"]["window"]
    if spec in ("quarter", "month"):
        return _period(windows[0], spec)[0], _period(windows[-1], spec)[1]
    rows = manifest["tasks"]["qa"]["windows"]
    names = [w["name"] for w in rows]
    first, last = names.index(windows[0]), names.index(windows[-1])
    start = datetime.fromisoformat(rows[first]["start"])
    nxt = rows[last + 1]["start"] if last + 1 < len(rows) else None
    return start, datetime.fromisoformat(nxt) if nxt else None


def classify_measurements(
    store: Store, domain: str, build: str, windows: Sequence[str], seed: int = 0
) -> dict[str, Any]:
    """The ``triage`` and ``duplicates`` parts of ``compare``'s metrics."""
    embedder = default_embedder()
    folder = find_build(store.settings.home, domain, build)
    triage = measure_triage(
        list(iter_examples(folder, "triage")), compared_span(folder, windows), embedder, seed
    )
    with store.begin() as conn:
        dom = resolve_domain(conn, domain)
        repos = [tuple(s.split(":", 1)) for s in dom.sources]
        issues = list(select_issues(conn, repos=repos, include_prs=False))
    dups = list(iter_examples(folder, "duplicates"))
    return {"triage": triage, "duplicates": measure_duplicates(dups, issues, embedder, seed)}


def classify_verdict(metrics: dict[str, Any]) -> list[str]:
    """Plain sentences on the triage classifier against its baseline and on duplicate recall."""
    out = []
    t = metrics.get("triage") or {}
    if "minus_baseline" in t:
        mean, lo, hi = t["minus_baseline"]["accuracy"]
        word = "better than" if lo > 0 else "worse than" if hi < 0 else "not clearly different from"
        out.append(
            f"the triage classifier is {word} the tf-idf baseline on accuracy ({t['accuracy']:.3f} "
            f"vs {t['baseline']['accuracy']:.3f}, difference {mean:+.3f}, 95% CI "
            f"[{lo:+.3f}, {hi:+.3f}], {t['heldout']} held-out issues)."
        )
    d = metrics.get("duplicates") or {}
    if d.get("pairs"):
        mean, lo, hi = d["recall_ci"]["5"]
        out.append(
            f"the similar-issue search puts the original among its top 5 for {mean:.0%} of "
            f"{d['pairs']} known duplicates (95% CI [{lo:.0%}, {hi:.0%}])."
        )
    return out
