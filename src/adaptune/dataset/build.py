"""Building a domain's dataset: stored issues → gated, deduplicated, windowed examples.

:func:`build` is the stage's entry point. It reads issues, PRs and comments from the store,
finds each solved issue's solution, applies the quality gate, collapses near-duplicate
questions, builds the qa, triage and duplicates tasks, splits them into chronological windows
and writes an immutable, content-hashed build. The qa examples taught by feedback on served
answers are handed in (``feedback``, made by :mod:`adaptune.feedback.examples`);
:func:`adaptune.pipeline.build_dataset` composes them, this build and the build's triage
classifier, and is what the CLI, the worker and the tests call.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import adaptune.dataset.card as card
from adaptune import __version__
from adaptune.dataset.artifacts import content_hash, read_manifest, write_build
from adaptune.dataset.dedupe import has_near_copy, near_duplicate_groups, signatures
from adaptune.dataset.gate import reject_reason
from adaptune.dataset.labels import table_for, triage_type
from adaptune.dataset.solutions import pr_fixes, solution_for
from adaptune.dataset.tasks import (
    duplicate_examples,
    find_duplicate_pairs,
    issue_ref,
    qa_example,
    triage_example,
)
from adaptune.dataset.taught import dedupe_feedback
from adaptune.dataset.windows import assign_windows, parse_window_spec
from adaptune.store import Store
from adaptune.store.domains import resolve_domain
from adaptune.store.issues import select_comments_of, select_issues
from adaptune.types import Comment, Example, Issue

TASKS = ("qa", "triage", "duplicates")


@dataclass(frozen=True, slots=True)
class BuildConfig:
    """How to build a dataset."""

    window: str = "quarter"
    """``quarter``, ``month`` or a number of examples per window."""
    heldout: float = 0.2
    """Share of each window held out for evaluation (deterministic by issue id)."""


@dataclass(slots=True)
class BuildResult:
    """What :func:`build` made."""

    build_id: str
    path: Path
    manifest: dict
    examples: dict[str, list[Example]] = field(default_factory=dict)


def _dedupe(examples: list[Example], rejected: Counter) -> list[Example]:
    ordered = sorted(examples, key=lambda e: (e.known_at, e.id))
    keep_of = near_duplicate_groups([e.question for e in ordered])
    kept = [e for i, e in enumerate(ordered) if keep_of[i] == i]
    rejected["duplicate"] += len(ordered) - len(kept)
    return kept


def _no_leaks(examples: list[Example], rejected: Counter) -> list[Example]:
    """Drop held-out examples that have a near copy anywhere in training."""
    train = [e.question for e in examples if e.split == "train"]
    held = [e for e in examples if e.split == "heldout"]
    leak = has_near_copy([e.question for e in held], train) if held and train else []
    leaked = {e.id for e, bad in zip(held, leak, strict=False) if bad}
    rejected["heldout_leak"] += len(leaked)
    return [e for e in examples if e.id not in leaked]


def _hard_negatives(issues: list[Issue], wanted: set[str], k: int = 5) -> dict[str, list[str]]:
    """For each wanted issue, the ``k`` most similar other issues (similar but different)."""
    if not wanted:
        return {}
    texts = [f"{i.title}\n{(i.body or '')[:2000]}" for i in issues]
    sigs = signatures(texts)
    out = {}
    for a, issue in enumerate(issues):
        if issue_ref(issue) not in wanted:
            continue
        scored = sorted(
            ((sigs[a].jaccard(sigs[b]), b) for b in range(len(issues)) if b != a), reverse=True
        )
        out[issue_ref(issue)] = [issue_ref(issues[b]) for _s, b in scored[:k]]
    return out


def _qa(domain, issues, fixes, comments, rejected) -> list[Example]:
    out = []
    for issue in issues:
        if issue.state != "closed":
            rejected["open"] += 1
            continue
        sol = solution_for(issue, fixes, comments.get((issue.repo, issue.number), ()))
        if sol is None:
            rejected["no_solution"] += 1
            continue
        out.append(qa_example(domain, issue, sol))
    return out


def build(
    store: Store,
    domain: str | None = None,
    config: BuildConfig | None = None,
    progress: Callable[[str], None] | None = None,
    feedback: Sequence[Example] = (),
    feedback_rejected: Counter | None = None,
) -> BuildResult:
    """Build (or find, when identical) the dataset of ``domain`` from what the store holds.

    ``feedback`` are qa examples taught by feedback on served answers, already through the
    quality gate; ``feedback_rejected`` counts what the gate refused of it under ``(reason,
    client)``. Near copies among them are dropped here and counted with those, for the card.
    """
    config = config or BuildConfig()
    spec = parse_window_spec(config.window)
    say = progress or (lambda _m: None)
    with store.begin() as conn:
        dom = resolve_domain(conn, domain)
        pairs = [tuple(s.split(":", 1)) for s in dom.sources]
        rows = list(select_issues(conn, repos=pairs))
        comments: dict[tuple[str, int], list[Comment]] = select_comments_of(conn, pairs)
    prs = [i for i in rows if i.is_pull_request]
    issues = [i for i in rows if not i.is_pull_request]
    say(f"{dom.name}: {len(issues)} issues, {len(prs)} pull requests")
    rejected: Counter = Counter()
    passed = []
    for issue in issues:
        reason = reject_reason(issue)
        if reason:
            rejected[reason] += 1
        else:
            passed.append(issue)
    say("finding solutions")
    qa = _dedupe(_qa(dom.name, passed, pr_fixes(prs), comments, rejected), rejected)
    # Corrections and accepted answers passed the same gate; rejections counted per client.
    feedback_rejected = Counter(feedback_rejected or {})
    qa += dedupe_feedback(feedback, [e.question for e in qa], feedback_rejected)
    table = table_for(
        [r for _s, r in pairs], store.settings.home / "domains" / dom.name / "labels.json"
    )
    triage = [
        triage_example(dom.name, i, lab)
        for i in passed
        if (lab := triage_type(i.labels, table, i.issue_type))
    ]
    triage_dedup: Counter = Counter()
    triage = _dedupe(triage, triage_dedup)
    by_number = {(i.repo, i.number): i for i in issues}
    pairs = find_duplicate_pairs(passed, by_number, comments)
    negatives = _hard_negatives(passed, {issue_ref(i) for i, _t in pairs})
    dups = duplicate_examples(dom.name, pairs, negatives)
    say("windows and splits")
    tasks: dict[str, list[Example]] = {}
    windows = {}
    for name, rows_ in (("qa", qa), ("triage", triage), ("duplicates", dups)):
        placed, windows[name] = assign_windows(rows_, spec, config.heldout)
        tasks[name] = _no_leaks(placed, rejected if name == "qa" else Counter())
    cfg = {"window": config.window, "heldout": config.heldout, "domain": dom.name}
    build_id = content_hash(cfg, [e for rows_ in tasks.values() for e in rows_])
    manifest = card.manifest(
        build_id,
        dom,
        cfg,
        tasks,
        windows,
        rejected,
        table,
        __version__,
        {
            "issues": len(issues),
            "pull_requests": len(prs),
            "comments": sum(map(len, comments.values())),
        },
        datetime.now(UTC),
        feedback_rejected,
    )
    files = {
        "manifest.json": card.to_json(manifest),
        "datacard.json": card.to_json(card.datacard(manifest, tasks)),
        "datacard.md": card.markdown(manifest, tasks),
    }
    path = write_build(store.settings.home, dom.name, build_id, tasks, files)
    manifest = read_manifest(path)  # an identical earlier build keeps its own manifest
    return BuildResult(build_id, path, manifest, tasks)


__all__ = ["TASKS", "BuildConfig", "BuildResult", "build"]
