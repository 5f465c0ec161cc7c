"""``adaptune demo``: the main job, end to end on the bundled sample."""

from __future__ import annotations

import typer

from adaptune.cli.output import err, out


def demo(
    quick: bool = typer.Option(False, "--quick", help="Two short windows (a few minutes)."),
) -> None:
    """Ingest → dataset → train each strategy over windows → evaluate → report (no network)."""
    from transformers.utils import logging as hf_logging

    from adaptune.cli.compare import classify_lines, modes_table, summary_table
    from adaptune.pipeline import demo as run_demo
    from adaptune.store import open_store

    hf_logging.disable_progress_bar()
    store = open_store()
    try:
        with err.status("demo…") as st:
            lines, metrics, folder = run_demo(store, progress=st.update, quick=quick)
    finally:
        store.close()
    for line in lines:
        out.print(line, soft_wrap=True)
    if metrics is None:
        return
    out.print(summary_table(metrics))
    out.print(modes_table(metrics))
    for line in classify_lines(metrics):
        out.print(line, soft_wrap=True)
    out.print("[bold]What the numbers say[/] (style-only control and retrieval baseline included):")
    for line in metrics["verdict"]:
        out.print(f"- {line}", soft_wrap=True)
    out.print(f"report: {folder / 'report.html'}")
