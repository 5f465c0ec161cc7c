"""What ``adaptune compare`` and ``adaptune demo`` print: the tables and the plain sentences."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from adaptune.cli.output import out


def summary_table(metrics: dict) -> Table:
    """Per strategy: NLL on the next and old windows, BWT, FWT, cost."""
    table = Table(
        "strategy",
        "ACC (NLL)",
        "next window",
        "old windows",
        "BWT",
        "FWT",
        "tokens",
        "sec",
        title="lower NLL is better; BWT < 0 is forgetting; cost: training tokens, seconds",
    )
    table.columns[0].no_wrap = True
    for name, s in metrics["strategies"].items():
        r = s["R"]
        nxt = [r[i][i + 1] for i in range(len(r) - 1)]
        old = [r[-1][j] for j in range(len(r) - 1)]
        table.add_row(
            name,
            f"{s['acc']:.3f}",
            _mean(nxt),
            _mean(old),
            f"{s['bwt']:+.3f}",
            f"{s.get('fwt', float('nan')):+.3f}",
            f"{s['cost']['tokens']:.0f}",
            f"{s['cost']['seconds']:.0f}",
        )
    return table


def modes_table(metrics: dict) -> Table:
    """The ways to answer: NLL, fix ranking and generated answers, with 95% CIs."""
    keys = ("nll", "fix_acc1", "fix_mrr", "embed_sim", "rouge_l")
    table = Table(
        "way to answer", "NLL", "fix acc@1", "fix MRR", "answer sim", "ROUGE-L",
        title="mean [95% CI]; NLL lower is better, the others higher",
    )  # fmt: skip
    table.columns[0].no_wrap = True
    for name, m in metrics["answer_modes"].items():
        table.add_row(name, *(fmt_ci(m.get(k), 2) for k in keys))
    return table


def classify_lines(metrics: dict) -> list[str]:
    """One line on the triage classifier and one on the duplicate search (or why not)."""
    t, d = metrics.get("triage") or {}, metrics.get("duplicates") or {}
    if "accuracy" in t:
        b = t["baseline"]
        triage = (
            f"triage: accuracy {fmt_ci(t.get('accuracy_ci'))}, macro-F1 {t['macro_f1']:.3f} on "
            f"{t.get('heldout', '?')} held-out issues (baseline: accuracy "
            f"{b['accuracy']:.3f}, macro-F1 {b['macro_f1']:.3f})"
        )
    else:
        triage = f"triage: not measured ({t.get('skipped', 'no data')})"
    if "recall_ci" in d:
        dups = f"duplicates: recall@5 {fmt_ci(d['recall_ci'].get('5'))} over {d['pairs']} pairs"
    else:
        dups = f"duplicates: not measured ({d.get('skipped', 'no data')})"
    return [triage, dups]


def _mean(values: list) -> str:
    vals = [v for v in values if v is not None and v == v]
    return f"{sum(vals) / len(vals):.3f}" if vals else "-"


def fmt_ci(ci: list | None, digits: int = 3) -> str:
    """``mean [lo, hi]`` of a ``[mean, lo, hi]`` interval (``digits`` after the point), or ``-``."""
    if not ci or ci[0] is None or ci[0] != ci[0]:
        return "-"
    return f"{ci[0]:.{digits}f} [{ci[1]:.{digits}f}, {ci[2]:.{digits}f}]"


def probe_lines(metrics: dict) -> list[str]:
    """Per adaptive chain: the memory probes answered with their trained fix after the last
    window, per window the issue was trained in, and the probes' BWT."""
    lines = []
    windows = metrics.get("windows") or []
    for name, p in (metrics.get("memory_probes") or {}).items():
        rows = p.get("hit_rate_per_window") or []
        if not rows:
            continue
        cells = [
            f"{w} {v:.0%}" for w, v in zip(windows, rows[-1], strict=False) if v is not None
        ]  # fmt: skip
        bwt = p.get("bwt")
        drop = f"; probe BWT {bwt:+.2f}" if bwt is not None else ""
        lines.append(
            f"memory probes, {name}: trained issues asked again whose fix ranks first after "
            f"the last window: {', '.join(cells) or '-'}{drop}"
        )
    return lines


def style_line(metrics: dict) -> str | None:
    """What the adapter learned beyond the project's style: the adapter with retrieval against
    the style-only control, on each measure, in one sentence."""
    pairs = {
        p["metric"]: p["diff"]
        for p in metrics.get("paired") or []
        if p["a"] == "adapter+retrieval" and p["b"] == "style-control"
    }
    if not pairs:
        return None
    names = {"nll": "answer NLL", "fix_mrr": "fix ranking (MRR)", "embed_sim": "answer similarity",
             "rouge_l": "ROUGE-L"}  # fmt: skip
    clear, unclear = [], []
    for metric, (mean, lo, hi) in pairs.items():
        better = mean < 0 if metric == "nll" else mean > 0
        text = f"{names.get(metric, metric)} {mean:+.3f} [{lo:+.3f}, {hi:+.3f}]"
        if hi < 0 or lo > 0:
            clear.append(f"{text} ({'better' if better else 'worse'})")
        else:
            unclear.append(text)
    said = f"clearly on {'; '.join(clear)}" if clear else "on no measure clearly"
    rest = f"; not clearly on {'; '.join(unclear)}" if unclear else ""
    return (
        "Beyond style (adapter + retrieval against the style-only control, trained on the same "
        f"fixes paired with the wrong issues): {said}{rest}."
    )


def print_summary(metrics: dict, folder: Path) -> None:
    """The tables, the classifier and probe lines, the sentences and the report's path."""
    out.print(summary_table(metrics))
    out.print(modes_table(metrics))
    for line in [*classify_lines(metrics), *probe_lines(metrics)]:
        out.print(line, soft_wrap=True)
    beyond = style_line(metrics)
    if beyond:
        out.print(f"[bold]{beyond}[/]", soft_wrap=True)
    out.print("[bold]What the numbers say[/] (style-only control and retrieval baseline included):")
    for line in metrics["verdict"]:
        out.print(f"- {line}", soft_wrap=True)
    out.print(f"report: {folder / 'report.html'}")
