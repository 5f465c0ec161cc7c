"""``adaptune compare``: train each strategy's chain over windows, measure, write the report."""

from __future__ import annotations

from typing import Any

import typer

from adaptune.cli.options import Opt, config_options
from adaptune.cli.output import err
from adaptune.cli.summary import print_summary
from adaptune.config import TrainConfig
from adaptune.errors import ConfigError
from adaptune.store import open_store


def _windows(text: str) -> tuple[int, int]:
    first, _, last = text.partition("-")
    try:
        return int(first), int(last or first)
    except ValueError:
        raise ConfigError(f"--windows {text!r}: write FIRST-LAST, e.g. 1-4.") from None


COMPARE_OPTIONS: tuple[Opt | str, ...] = (
    "strategies",
    "windows",
    Opt("max_steps", default=12, help="Steps per adapter."),
    Opt("epochs", default=None, help="Passes over each window's examples instead of --max-steps."),
    Opt("batch_size"),
    Opt("max_len", default=512, help="Tokens per row / evaluated example."),
    "heldout",
    "ranking",
    "probes",
    "generate",
    "backend",
    "context",
    Opt("model"),
)
"""The TrainConfig settings ``adaptune compare`` offers, in the order of its help; a string
places one of the command's own options. Its defaults of ``max_steps`` and ``max_len`` are
CompareConfig's (short chains), whose module loads PyTorch; a test keeps them equal."""


@config_options(TrainConfig, COMPARE_OPTIONS)
def compare(
    settings: dict[str, Any],
    strategies: str = typer.Option(
        "adaptive,from-base,cumulative",
        "--strategies",
        help="adaptive, adaptive-no-replay, from-base, cumulative.",
    ),
    windows: str = typer.Option("1-4", "--windows", help="FIRST-LAST (1-based)."),
    heldout: int = typer.Option(24, "--heldout", help="Held-out examples measured per window."),
    ranking: int = typer.Option(16, "--ranking", help="Issues whose fix is ranked."),
    probes: int = typer.Option(8, "--probes", help="Memory probes per window (0: none)."),
    generate: int = typer.Option(16, "--generate", help="Questions answered by generation."),
    backend: str = typer.Option(
        "auto", "--backend", help="auto (llama.cpp if installed), llamacpp or transformers."
    ),
    context: str = typer.Option("retrieved", "--context", help="retrieved or none."),
    no_control: bool = typer.Option(False, "--no-style-control", help="Skip the style control."),
    domain: str | None = typer.Option(None, "--domain", help="Domain (default: the only one)."),
) -> None:
    """Compare training strategies over windows: R matrix, ACC/BWT/FWT, controls, HTML report."""
    from transformers.utils import logging as hf_logging

    from adaptune.pipeline.compare import CompareConfig
    from adaptune.pipeline.compare import compare as run_compare

    hf_logging.disable_progress_bar()
    first, last = _windows(windows)
    if settings["epochs"]:  # passes instead of steps
        settings = {**settings, "max_steps": None}
    else:  # the config's own default, unused while max_steps is set
        settings = {k: v for k, v in settings.items() if k != "epochs"}
    cfg = CompareConfig(
        **settings,
        strategies=tuple(s.strip() for s in strategies.split(",") if s.strip()),
        first=first,
        last=last,
        heldout_per_window=heldout,
        ranking_examples=ranking,
        probes_per_window=probes,
        context=context,
        style_control=not no_control,
        generate=generate,
        backend=backend,
    )
    store = open_store()
    with err.status("compare…") as st:
        metrics, folder = run_compare(store, domain, cfg, progress=st.update)
    print_summary(metrics, folder)
