"""The manifest and data card of a dataset build: sources, counts, rejections, labels, windows.

The manifest's ``build``, ``tasks`` and ``rejected`` keys are the ``dataset show --json``
contract that scripts rely on. ``rejected`` counts issues; what feedback taught and what the
gate refused of it is under ``tasks.qa.feedback``, per client (token), so an operator sees who
taught what.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import datetime
from typing import Any

from adaptune.dataset.taught import NO_CLIENT, SOURCE
from adaptune.dataset.windows import Window
from adaptune.types import Domain, Example

_TOKEN = re.compile(r"\w+|[^\w\s]")
BINS = (64, 128, 256, 512, 1024, 2048, 4096)


def approx_tokens(text: str) -> int:
    """Words and symbols: a tokenizer-free estimate of a text's length in tokens."""
    return len(_TOKEN.findall(text))


def _task_summary(rows: list[Example], windows: list[Window]) -> dict[str, Any]:
    per = Counter((e.window, e.split) for e in rows)
    out: dict[str, Any] = {
        "total": len(rows),
        "windows": [
            {
                "name": w.name,
                "start": w.start.isoformat(),
                "end": w.end.isoformat(),
                "train": per[(w.name, "train")],
                "heldout": per[(w.name, "heldout")],
            }
            for w in windows
            if per[(w.name, "train")] + per[(w.name, "heldout")]
        ],
    }
    return out


def manifest(
    build_id: str,
    domain: Domain,
    config: dict[str, Any],
    tasks: dict[str, list[Example]],
    windows: dict[str, list[Window]],
    rejected: Counter,
    label_table: dict[str, str],
    version: str,
    inputs: dict[str, int],
    created_at: datetime,
    feedback_rejected: Counter | None = None,
) -> dict[str, Any]:
    """Where a build came from and what it holds.

    ``feedback_rejected`` counts the feedback the gate refused under ``(reason, client)``.
    """
    summary = {name: _task_summary(rows, windows[name]) for name, rows in tasks.items()}
    summary["triage"]["labels"] = dict(Counter(e.answer for e in tasks["triage"]).most_common())
    sources = Counter(e.solution_source for e in tasks["qa"])
    summary["qa"]["solution_sources"] = dict(sources)
    summary["qa"]["feedback"] = feedback_summary(tasks["qa"], feedback_rejected or Counter())
    return {
        "build": build_id,
        "domain": domain.name,
        "sources": list(domain.sources),
        "created_at": created_at.isoformat(),
        "adaptune_version": version,
        "config": config,
        "inputs": inputs,
        "tasks": summary,
        "rejected": dict(sorted(rejected.items())),
        "label_table": label_table,
    }


def feedback_summary(qa: list[Example], rejected: Counter) -> dict[str, Any]:
    """Feedback examples per client, and the gate's rejections by reason and per client."""
    taught = Counter(e.meta.get("client") or NO_CLIENT for e in qa if e.solution_source == SOURCE)
    reasons: Counter = Counter()
    refused: Counter = Counter()
    for (reason, client), n in rejected.items():
        reasons[reason] += n
        refused[client] += n
    return {
        "examples": sum(taught.values()),
        "by_client": dict(sorted(taught.items())),
        "rejected": dict(sorted(reasons.items())),
        "rejected_by_client": dict(sorted(refused.items())),
    }


def _histogram(rows: list[Example], attr: str) -> dict[str, int]:
    counts: Counter = Counter()
    for ex in rows:
        n = approx_tokens(getattr(ex, attr))
        counts[next((f"<={b}" for b in BINS if n <= b), f">{BINS[-1]}")] += 1
    return {k: counts[k] for k in [*(f"<={b}" for b in BINS), f">{BINS[-1]}"] if counts[k]}


def datacard(man: dict[str, Any], tasks: dict[str, list[Example]]) -> dict[str, Any]:
    """The manifest plus length histograms (approximate tokens) per task."""
    lengths = {
        name: {"question": _histogram(rows, "question"), "answer": _histogram(rows, "answer")}
        for name, rows in tasks.items()
    }
    return {**man, "token_lengths": lengths, "token_lengths_unit": "words and symbols"}


def markdown(man: dict[str, Any], tasks: dict[str, list[Example]]) -> str:
    """A human-readable data card."""
    card = datacard(man, tasks)
    lines = [
        f"# Dataset build {man['build']} ({man['domain']})",
        "",
        f"Sources: {', '.join(man['sources'])}. Built {man['created_at']} by adaptune "
        f"{man['adaptune_version']}; windows by {man['config']['window']}, "
        f"{man['config']['heldout']:.0%} held out.",
        f"Input: {man['inputs']['issues']} issues, {man['inputs']['pull_requests']} pull "
        f"requests, {man['inputs']['comments']} comments.",
        "",
        "## Tasks",
    ]
    for name, t in man["tasks"].items():
        lines += [
            "",
            f"### {name}: {t['total']} examples",
            "",
            "| window | start | end | train | held out |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {w['name']} | {w['start'][:10]} | {w['end'][:10]} | {w['train']} | {w['heldout']} |"
            for w in t["windows"]
        ]
        if t.get("labels"):
            lines += ["", "Labels: " + ", ".join(f"{k} {v}" for k, v in t["labels"].items())]
        lines += [
            "",
            f"Question lengths (approx. tokens): {card['token_lengths'][name]['question']}",
        ]
    lines += ["", "## Rejected", ""]
    lines += [f"- {k}: {v}" for k, v in man["rejected"].items()] or ["- none"]
    lines += _feedback_lines(man["tasks"]["qa"].get("feedback"))
    return "\n".join(lines) + "\n"


def _feedback_lines(fb: dict[str, Any] | None) -> list[str]:
    """The card's feedback section: examples and rejections per client, rejection reasons."""
    if fb is None:  # a manifest from before feedback was counted
        return []
    lines = ["", "## Feedback", "", f"{fb['examples']} qa examples from feedback.", ""]
    clients = sorted(set(fb["by_client"]) | set(fb["rejected_by_client"]))
    if clients:
        lines += ["| client | examples | rejected |", "|---|---|---|"]
        lines += [
            f"| {c} | {fb['by_client'].get(c, 0)} | {fb['rejected_by_client'].get(c, 0)} |"
            for c in clients
        ]
        lines.append("")
    why = ", ".join(f"{k} {v}" for k, v in fb["rejected"].items()) or "none"
    return [*lines, f"Rejected feedback: {why}"]


def to_json(data: Any) -> str:
    """Stable, readable JSON for files under a build."""
    return json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n"
