"""The evaluation report: one self-contained ``report.html`` from an evaluation's metrics dict.

:func:`render_report` is the entry point. Figures are PNGs inlined as base64 (see ``plots``), the
CSS is inline, and nothing is fetched from the network, so the file can be mailed or archived.
Issue texts are user content: the shared page environment escapes and scrubs every value, and a
Content-Security-Policy ``<meta>`` tag allows only the template's own (hashed) style block and
inline images, so even markup that got through could run no script.

The metrics dict. Every key is optional: a missing or ``null`` part renders "not measured".
``CI`` is ``[mean, lo, hi]`` (a 95% interval); ``[lo, hi]`` pairs are intervals alone::

    id, created_at (ISO 8601), domain, build, base_model, machine, command: str
    windows: [str]                    # time windows in training order, e.g. "2021Q1"
    strategies: {name: {              # adaptive, adaptive-no-replay, from-base, cumulative, ...
        R: [[float|null]],            # R[i][j]: answer NLL after window i, on window j's held-out
        R_ci: [[[lo, hi]|null]],      # same shape as R
        acc: float,                   # mean of the last row of R (lower is better)
        bwt: float,                   # backward transfer, oriented so that < 0 means forgetting
        fwt: float,                   # forward transfer, > 0: helps on windows not yet trained on
        cost: {tokens: int, seconds: float, examples: int},   # totals over the chain
        versions: [str]}}             # registry versions the chain produced
    base: {nll_per_window: [float|null], nll_ci: [[lo, hi]|null]}
    answer_modes: {mode: {nll, rouge_l, embed_sim, fix_acc1, fix_mrr: CI|null}}
        # modes: base, base+retrieval, adapter, adapter+retrieval, retrieval-baseline,
        # style-control (shown in that order; others after them)
    paired: [{a: mode, b: mode, metric: str, diff: CI}]      # diff = a - b, paired bootstrap
    memory_probes: {strategy: {hit_rate_per_window: [[float|null]], bwt: float}}
    triage: {accuracy, macro_f1: float, labels: [str], confusion: [[int]],   # rows: true
             baseline: {name: str, accuracy: float, macro_f1: float, accuracy_ci: CI},
             name: str, accuracy_ci: CI, train, heldout: int,   # classifier, examples used
             minus_baseline: {accuracy: CI},                    # paired: classifier - baseline
             skipped: str}                 # why it was not measured (then nothing else shows)
    duplicates: {recall_at_k: {"1": float, "5": float, ...}, recall_ci: {"1": CI, ...},
                 pairs: int, duplicate_of: {threshold: float, rate: CI},  # best hit ≥ threshold
                 skipped: str}              # e.g. the build has no duplicate pairs
    cross_domain: [{from: str, to: str, nll_base: float, nll_adapter: float}]
    samples: [{issue, question, reference, base, adaptive, retrieval: str}]
    verdict: [str]                    # plain-language findings, written by the evaluator

Sign conventions: lower NLL is better; every other metric is better higher; BWT < 0 means
forgetting; FWT > 0 means earlier windows helped on later ones.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

import adaptune.evaluate.plots as plots
from adaptune.evaluate.plots import fmt3, measured
from adaptune.pages import environment, policy

TEMPLATE = "report.html.j2"
MAX_SAMPLES = 6
WIDE = 8
"""Heat-maps with more columns than this get a row of their own."""
MODES = {
    "base": "the base model, question only",
    "base+retrieval": "the base model, with similar past issues in the prompt",
    "adapter": "the domain adapter, question only",
    "adapter+retrieval": "the domain adapter, with similar past issues in the prompt",
    "retrieval-baseline": "no model: the fix of the most similar past issue",
    "style-control": "control: an adapter that learned the tracker's style, not its content",
}
METRICS = {  # key: (column header, lower is better)
    "nll": ("answer NLL ↓", True),
    "rouge_l": ("ROUGE-L ↑", False),
    "embed_sim": ("embedding sim. ↑", False),
    "fix_acc1": ("fix acc@1 ↑", False),
    "fix_mrr": ("fix MRR ↑", False),
}


def render_report(metrics: dict[str, Any], out_dir: Path) -> Path:
    """Write ``out_dir/report.html`` (atomically) from an evaluation's metrics; return its path."""
    # The policy travels in a <meta> tag: the file is opened without a server. frame-ancestors
    # is left out there (browsers ignore it in <meta>).
    csp = "; ".join(
        p for p in policy(TEMPLATES, TEMPLATE).split("; ") if not p.startswith("frame-ancestors")
    )
    context = {**build_context(metrics), "csp": Markup(csp)}
    html = _environment().get_template(TEMPLATE).render(**context)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.html"
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".report-", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(html)
    os.replace(tmp, path)
    return path


TEMPLATES = Path(__file__).parent / "templates"


def _environment() -> jinja2.Environment:
    """The pages' shared environment (:func:`adaptune.pages.environment`): every value escaped
    and scrubbed of secrets, because issue texts are user content."""
    env = environment(TEMPLATES, strict=True)
    env.filters["f3"] = fmt3
    env.tests["measured"] = measured
    return env


def build_context(m: dict[str, Any]) -> dict[str, Any]:
    """Everything the template shows, formatted; a section is ``None`` when it was not measured."""
    windows = [str(w) for w in m.get("windows") or []]
    strategies = {k: v for k, v in (m.get("strategies") or {}).items() if isinstance(v, dict)}
    samples = list(m.get("samples") or [])
    probes = m.get("memory_probes") or {}
    return {
        "meta": {k: m.get(k) or "not recorded" for k in _META},
        "verdict": [str(line) for line in m.get("verdict") or []],
        "modes": _answer_modes(m.get("answer_modes")),
        "paired": _paired(m.get("paired")),
        "r_maps": plots.r_maps(strategies, windows),
        "r_wide": _wide(s.get("R") for s in strategies.values()),
        "nll_plot": plots.nll_per_window(strategies, m.get("base"), windows),
        "cost": _cost(strategies),
        "transfer": _transfer(strategies),
        "memory": _memory(m.get("memory_probes"), windows),
        "memory_wide": _wide((p or {}).get("hit_rate_per_window") for p in probes.values()),
        "triage": _triage(m.get("triage")),
        "duplicates": _duplicates(m.get("duplicates")),
        "cross_domain": _cross_domain(m.get("cross_domain")),
        "samples": [_keys(s, _SAMPLE) for s in samples[:MAX_SAMPLES]],
        "samples_total": len(samples),
    }


_META = ("id", "created_at", "domain", "build", "base_model", "machine", "command")
_SAMPLE = ("issue", "question", "reference", "base", "adaptive", "retrieval")


def _wide(matrices: Iterable[Sequence[Sequence[object]] | None]) -> bool:
    """Whether a heat-map has so many columns that it needs the page's full width."""
    return any(len(row) > WIDE for matrix in matrices for row in matrix or [])


def _keys(row: Any, keys: Sequence[str]) -> dict[str, Any]:
    """A row from the metrics with every key the template reads (``None`` when absent)."""
    row = row if isinstance(row, dict) else {}
    return {**row, **{k: row.get(k) for k in keys}}


def ci_text(ci: Sequence[float | None] | None, signed: bool = False) -> str | None:
    """``[mean, lo, hi]`` as "1.23 [1.20, 1.26]"; ``None`` when the value was not measured."""
    if not ci or not measured(ci[0]):
        return None
    if len(ci) < 3 or not (measured(ci[1]) and measured(ci[2])):
        return fmt3(ci[0], signed)
    return f"{fmt3(ci[0], signed)} [{fmt3(ci[1], signed)}, {fmt3(ci[2], signed)}]"


def _cell_text(ci: Sequence[float | None] | None) -> dict[str, str | None]:
    """A table cell's mean and, for a second, smaller line, its interval "[lo, hi]"."""
    text = ci_text(ci)
    mean, _, interval = (text or "").partition(" ")
    return {"mean": mean or None, "interval": interval}


def _answer_modes(modes: dict[str, Any] | None) -> dict[str, Any] | None:
    """Rows of the answer-modes table, in the canonical order, with the best mean per column."""
    if not modes:
        return None
    names = [n for n in MODES if n in modes] + [n for n in modes if n not in MODES]
    best = {key: _best(modes, names, key, lower) for key, (_, lower) in METRICS.items()}
    rows = [
        {
            "name": name,
            "about": MODES.get(name, ""),
            "cells": [
                {**_cell_text((modes[name] or {}).get(key)), "best": best[key] == name}
                for key in METRICS
            ],
        }
        for name in names
    ]
    return {"headers": [header for header, _ in METRICS.values()], "rows": rows}


def _best(modes: dict[str, Any], names: list[str], key: str, lower: bool) -> str | None:
    """The mode with the best mean on one metric, or ``None`` if none measured it."""
    means = {n: ((modes[n] or {}).get(key) or [None])[0] for n in names}
    means = {n: v for n, v in means.items() if measured(v)}
    if not means:
        return None
    return (min if lower else max)(means, key=means.__getitem__)


def _paired(pairs: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Paired differences with a plain reading: who is better, or no clear difference."""
    if not pairs:
        return None
    rows = []
    for p in (_keys(p, ("a", "b", "metric", "diff")) for p in pairs):
        diff = p["diff"] or [None]
        lower = METRICS.get(p["metric"] or "", ("", False))[1]
        rows.append({**p, "text": ci_text(diff, signed=True), "reading": _reading(p, diff, lower)})
    return rows


def _reading(pair: dict[str, Any], diff: Sequence[float | None], lower: bool) -> str:
    """Which side the interval of ``a - b`` favours, given the metric's direction."""
    if len(diff) < 3 or not (measured(diff[1]) and measured(diff[2])):
        return "no interval"
    if (diff[2] < 0) if lower else (diff[1] > 0):
        return f"{pair['a']} better"
    if (diff[1] > 0) if lower else (diff[2] < 0):
        return f"{pair['b']} better"
    return "no clear difference (interval spans 0)"


def _cost(strategies: dict[str, Any]) -> dict[str, Any] | None:
    """Cost against quality: a table of every strategy and a scatter of those with both."""
    if not strategies:
        return None
    rows = [
        {"name": k, "acc": s.get("acc"), **_keys(s.get("cost"), ("tokens", "seconds", "examples"))}
        for k, s in strategies.items()
    ]
    return {"rows": rows, "img": plots.cost_plot(rows)}


def _transfer(strategies: dict[str, Any]) -> list[dict[str, Any]] | None:
    """ACC, BWT and FWT per strategy, with the chain of versions it produced."""
    if not strategies:
        return None
    return [
        {**_keys(s, ("acc", "bwt", "fwt")), "name": k, "versions": list(s.get("versions") or [])}
        for k, s in strategies.items()
    ]


def _memory(probes: dict[str, Any] | None, windows: list[str]) -> list[dict[str, Any]] | None:
    """Per strategy: its probe-hit-rate matrix as a heat-map and its probe BWT."""
    if not probes:
        return None
    return [
        {
            "name": name,
            "img": plots.memory_map(name, (p or {}).get("hit_rate_per_window"), windows),
            "bwt": (p or {}).get("bwt"),
        }
        for name, p in probes.items()
    ]


def _triage(t: dict[str, Any] | None) -> dict[str, Any] | None:
    """Triage scores next to the TF-IDF baseline, and the confusion matrix as a heat-map; or
    only the reason it was skipped."""
    if not t:
        return None
    keys = ("name", "accuracy", "macro_f1", "train", "heldout", "skipped")
    if t.get("skipped"):
        return {**_keys(t, keys), "skipped": str(t["skipped"])}
    img = plots.confusion_map(t.get("confusion"), [str(x) for x in t.get("labels") or []])
    baseline = _keys(t.get("baseline"), ("name", "accuracy", "macro_f1"))
    baseline["interval"] = _cell_text((t.get("baseline") or {}).get("accuracy_ci"))["interval"]
    diff = ((t.get("minus_baseline") or {}).get("accuracy")) or [None]
    pair = {"a": t.get("name") or "the classifier", "b": "the baseline"}
    return {
        **_keys(t, keys),
        "interval": _cell_text(t.get("accuracy_ci"))["interval"],
        "baseline": baseline,
        "diff": ci_text(diff, signed=True),
        "reading": _reading(pair, diff, lower=False),
        "img": img,
    }


def _duplicates(d: dict[str, Any] | None) -> dict[str, Any] | None:
    """Recall@k by k, with intervals, and how often ``duplicate_of`` names the original; or
    only the reason it was skipped."""
    d = d or {}
    if d.get("skipped"):
        return {"skipped": str(d["skipped"]), "pairs": d.get("pairs")}
    recall = d.get("recall_at_k")
    if not recall:
        return None
    cis = d.get("recall_ci") or {}
    order = sorted(recall, key=lambda k: int(k) if str(k).isdigit() else 1 << 30)
    rows = [
        {"k": k, "value": recall[k], "interval": _cell_text(cis.get(k))["interval"]} for k in order
    ]
    dup = d.get("duplicate_of") or {}
    return {
        "skipped": None,
        "rows": rows,
        "pairs": d.get("pairs"),
        "flagged": ci_text(dup.get("rate")),
        "threshold": dup.get("threshold"),
    }


def _cross_domain(rows: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Transfer between domains, with the adapter's change in NLL against the base model."""
    if not rows:
        return None
    out = []
    for r in (_keys(r, ("from", "to", "nll_base", "nll_adapter")) for r in rows):
        base, adapter = r["nll_base"], r["nll_adapter"]
        delta = adapter - base if measured(base) and measured(adapter) else None
        out.append({**r, "delta": delta})
    return out
