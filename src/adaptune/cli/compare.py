"""``adaptune compare``: train each strategy's chain over windows, measure, write the report."""

from __future__ import annotations

import typer

from adaptune.cli.output import err
from adaptune.cli.summary import print_summary
from adaptune.errors import ConfigError


def _windows(text: str) -> tuple[int, int]:
    first, _, last = text.partition("-")
    try:
        return int(first), int(last or first)
    except ValueError:
        raise ConfigError(f"--windows {text!r}: write FIRST-LAST, e.g. 1-4.") from None


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
    print_summary(metrics, folder)
