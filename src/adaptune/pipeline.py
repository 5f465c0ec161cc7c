"""The only module that wires several stages together: what ``adaptune demo`` runs.

Today the pipeline is: ingest the bundled sample → build the dataset → report. Each later stage
(train, evaluate, registry) adds its step here, called the same way by the CLI, the service's
worker and the tests.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path

from adaptune.dataset import build
from adaptune.ingest import ingest
from adaptune.ingest.files import file_source
from adaptune.store import Store

SAMPLE = "huggingface-datasets-2021-2022.jsonl.gz"


def sample_path() -> Path:
    """The bundled sample of real huggingface/datasets issues and their fixing PRs."""
    return Path(str(resources.files("adaptune") / "samples" / SAMPLE))


def demo(
    store: Store, progress: Callable[[str], None] | None = None, quick: bool = False
) -> list[str]:
    """Run the demo pipeline on the bundled sample; returns summary lines for the user."""
    report = ingest(file_source(sample_path(), progress=progress), store)
    lines = [
        f"ingested {SAMPLE}: {report.seen} rows ({report.inserted} new, "
        f"{report.updated} updated, {report.unchanged} unchanged, "
        f"{len(report.rejected)} rejected)",
    ]
    data = build(store, progress=progress)
    tasks = data.manifest["tasks"]
    lines.append(
        f"dataset build {data.build_id}: {tasks['qa']['total']} qa pairs in "
        f"{len(tasks['qa']['windows'])} windows, {tasks['triage']['total']} triage examples, "
        f"{tasks['duplicates']['total']} duplicate pairs ({data.path})"
    )
    return lines
