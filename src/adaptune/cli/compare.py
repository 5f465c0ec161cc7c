"""``adaptune compare``: train each strategy's chain over windows, measure, write the report."""

from __future__ import annotations

import typer
from rich.table import Table

from adaptune.cli.output import err, out
from adaptune.errors import ConfigError


def _windows(text: str) -> tuple[int, int]:
    first, _, last = text.partition("-")
    try:
        return int(first), int(last or first)
    except ValueError:
        raise ConfigError(f"--windows {text!r}: write FIRST-LAST, e.g. 1-4.") from None


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
        "seconds",
        title="lower NLL is better; BWT < 0 is forgetting",
    )
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
    """The ways to answer: NLL and fix ranking with 95% CIs."""
    keys = ("nll", "fix_acc1", "fix_mrr", "embed_sim", "rouge_l")
    table = Table("answer mode", "NLL", "fix acc@1", "fix MRR", "answer sim", "ROUGE-L")
    for name, m in metrics["answer_modes"].items():
        table.add_row(name, *(fmt_ci(m.get(k)) for k in keys))
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


def fmt_ci(ci: list | None) -> str:
    """``mean [lo, hi]`` of a ``[mean, lo, hi]`` interval, or ``-``."""
    if not ci or ci[0] is None or ci[0] != ci[0]:
        return "-"
    return f"{ci[0]:.3f} [{ci[1]:.3f}, {ci[2]:.3f}]"


def compare(
    strategies: str = typer.Option(
        "adaptive,from-base,cumulative",
        "--strategies",
        help="adaptive, adaptive-no-replay, from-base, cumulative.",
    ),
    windows: str = typer.Option("1-4", "--windows", help="FIRST-LAST (1-based)."),
    max_steps: int | None = typer.Option(12, "--max-steps", help="Steps per adapter."),
    epochs: float | None = typer.Option(
        None, "--epochs", help="Passes over each window's examples instead of --max-steps."
    ),
    batch_size: int = typer.Option(4, "--batch-size", help="Packed rows per step."),
    max_len: int = typer.Option(512, "--max-len", help="Tokens per row / evaluated example."),
    heldout: int = typer.Option(24, "--heldout", help="Held-out examples measured per window."),
    ranking: int = typer.Option(16, "--ranking", help="Issues whose fix is ranked."),
    probes: int = typer.Option(8, "--probes", help="Memory probes per window (0: none)."),
    generate: int = typer.Option(16, "--generate", help="Questions answered by generation."),
    backend: str = typer.Option(
        "auto", "--backend", help="auto (llama.cpp if installed), llamacpp or transformers."
    ),
    context: str = typer.Option("retrieved", "--context", help="retrieved or none."),
    model: str | None = typer.Option(None, "--model", help="Base model path (default SmolLM2)."),
    no_control: bool = typer.Option(False, "--no-style-control", help="Skip the style control."),
    domain: str | None = typer.Option(None, "--domain", help="Domain (default: the only one)."),
) -> None:
    """Compare training strategies over windows: R matrix, ACC/BWT/FWT, controls, HTML report."""
    from transformers.utils import logging as hf_logging

    from adaptune.pipeline.compare import CompareConfig
    from adaptune.pipeline.compare import compare as run_compare
    from adaptune.store import open_store

    hf_logging.disable_progress_bar()
    first, last = _windows(windows)
    cfg = CompareConfig(
        strategies=tuple(s.strip() for s in strategies.split(",") if s.strip()),
        first=first,
        last=last,
        max_steps=None if epochs else max_steps,
        epochs=epochs or 1.0,
        batch_size=batch_size,
        max_len=max_len,
        heldout_per_window=heldout,
        ranking_examples=ranking,
        probes_per_window=probes,
        context=context,
        model=model,
        style_control=not no_control,
        generate=generate,
        backend=backend,
    )
    store = open_store()
    with err.status("compare…") as st:
        metrics, folder = run_compare(store, domain, cfg, progress=st.update)
    out.print(summary_table(metrics))
    out.print(modes_table(metrics))
    for line in classify_lines(metrics):
        out.print(line, soft_wrap=True)
    for line in metrics["verdict"]:
        out.print(f"- {line}")
    out.print(f"report: {folder / 'report.html'}")
