"""``adaptune demo``: the main job, end to end on the bundled sample."""

from __future__ import annotations

import typer

from adaptune.cli.domains import status
from adaptune.cli.output import err


def demo(
    quick: bool = typer.Option(False, "--quick", help="A shorter run."),
) -> None:
    """Run the pipeline end to end on the bundled sample of real issues (no network needed)."""
    from adaptune.pipeline import demo as run_demo
    from adaptune.store import open_store

    store = open_store()
    try:
        with err.status("demo…") as st:
            summary = run_demo(store, progress=st.update, quick=quick)
    finally:
        store.close()
    for line in summary:
        err.print(line, soft_wrap=True)
    status(as_json=False)
