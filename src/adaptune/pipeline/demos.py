"""The demo, end to end: ingest → dataset build → compare the strategies (train, evaluate, report).

Two sources: the bundled sample (no network; windows 2–4 of its build, 2–3 with ``quick``) or a
live GitHub repository, whose windows are chosen from what its build holds
(:func:`choose_windows`). Adapters already trained are reused, so a second run is cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adaptune.errors import ConfigError
from adaptune.ingest import ingest
from adaptune.ingest.files import file_source
from adaptune.pipeline.compare import CompareConfig, compare
from adaptune.pipeline.dataset_build import build_dataset
from adaptune.store import Store
from adaptune.store.domains import domain_of
from adaptune.types import IngestReport

if TYPE_CHECKING:
    from adaptune.ingest.github import GitHubSource

SAMPLE = "huggingface-datasets-2021-2022.jsonl.gz"
MIN_WINDOWS = 2
"""Consecutive trainable windows a chain needs: one to learn, one to carry on from it."""
MOST_WINDOWS = 3
"""Windows of a full demo on a repository (``quick``: :data:`MIN_WINDOWS`)."""

DemoResult = tuple[list[str], dict[str, Any], Path]
"""Summary lines, the compare metrics and the report's folder."""


def sample_path() -> Path:
    """The bundled sample of real huggingface/datasets issues and their fixing PRs."""
    return Path(str(resources.files("adaptune") / "samples" / SAMPLE))


def demo(
    store: Store,
    progress: Callable[[str], None] | None = None,
    quick: bool = False,
    source: GitHubSource | None = None,
    model: str | None = None,
) -> DemoResult:
    """Ingest, build the dataset, compare the strategies; summary lines, metrics, report.

    ``source`` is a GitHub repository to run on instead of the bundled sample; ``model`` a base
    model folder (default SmolLM2). ``quick`` trains fewer, shorter adapters on two windows
    (minutes on a 2-core CPU); the full demo trains four windows per strategy.
    """
    if source is None:
        report = ingest(file_source(sample_path(), progress=progress), store)
        lines = [_ingested(SAMPLE, report)]
        repos = sorted(report.repos)
    else:
        report = ingest(source, store)
        lines = [_ingested(report.source, report)]
        repos = [("github", source.repo)]  # a 304 answer touches no repo
    domain = _domain(store, repos, report.source)
    data = build_dataset(store, domain, progress=progress)
    tasks = data.manifest["tasks"]
    qa = tasks["qa"]
    lines.append(
        f"dataset build {data.build_id} of domain {domain}: {qa['total']} qa pairs in "
        f"{len(qa['windows'])} windows, {tasks['triage']['total']} triage examples, "
        f"{tasks['duplicates']['total']} duplicate pairs ({data.path})"
    )
    cfg = replace(demo_config(quick), model=model)
    if source is not None:
        span = choose_windows(qa["windows"], MIN_WINDOWS if quick else MOST_WINDOWS)
        if span is None:
            raise ConfigError(too_few(source, data.manifest))
        cfg = replace(cfg, first=span[0], last=span[1])
    names = [w["name"] for w in qa["windows"][cfg.first - 1 : cfg.last]]
    lines.append(f"domain {domain}: training on windows {', '.join(names)}")
    metrics, folder = compare(store, domain, cfg, progress=progress)
    return lines, metrics, folder


def _ingested(name: str, report: IngestReport) -> str:
    if report.not_modified:
        return f"ingested {name}: not modified since the last sync"
    extra = f", {report.comments} comments" if report.comments else ""
    return (
        f"ingested {name}: {report.seen} rows ({report.inserted} new, "
        f"{report.updated} updated, {report.unchanged} unchanged, "
        f"{len(report.rejected)} rejected{extra})"
    )


def _domain(store: Store, repos: Sequence[tuple[str, str]], what: str) -> str:
    """The domain the ingested repo belongs to (its own, unless one was set up for it)."""
    with store.begin() as conn:
        names = {domain_of(conn, source, repo) for source, repo in repos} - {None}
    if len(names) != 1:
        raise ConfigError(
            f"{what} gave no issues or pull requests to learn from; "
            "check the repository name, or use one with a history of solved issues."
        )
    return str(names.pop())


def demo_config(quick: bool) -> CompareConfig:
    """How big the demo is: sized for a 2-core CPU (see the README for measured times)."""
    if quick:
        return CompareConfig(
            first=2,
            last=3,
            max_steps=1,
            batch_size=2,
            max_len=384,
            heldout_per_window=4,
            ranking_examples=0,
            probes_per_window=0,
            generate=3,
        )
    return CompareConfig(
        first=2,
        last=4,
        max_steps=4,
        batch_size=4,
        max_len=512,
        heldout_per_window=6,
        ranking_examples=6,
        probes_per_window=2,
        generate=6,
    )


def choose_windows(windows: Sequence[Mapping[str, Any]], most: int) -> tuple[int, int] | None:
    """1-based ``(first, last)`` of the newest run of consecutive usable windows, or ``None``.

    ``windows`` are a build manifest's qa windows (``name``, ``train``, ``heldout``). A window
    is usable when it has training examples to learn from and held-out ones to be measured on
    (a window with none would leave its column of the R matrix, and ACC, undefined). The run
    is at most ``most`` and at least :data:`MIN_WINDOWS` windows long.
    """
    end = len(windows)
    while end >= MIN_WINDOWS:
        start = end
        while start > max(0, end - most) and _usable(windows[start - 1]):
            start -= 1
        if end - start >= MIN_WINDOWS:
            return start + 1, end
        end = min(start, end - 1)  # skip past the window that broke the run
    return None


def _usable(window: Mapping[str, Any]) -> bool:
    return window["train"] > 0 and window["heldout"] > 0


def too_few(source: GitHubSource, manifest: Mapping[str, Any]) -> str:
    """Why a repository's build cannot carry the demo, and what to do about it."""
    qa = manifest["tasks"]["qa"]
    counts = ", ".join(f"{w['name']}: {w['train']}+{w['heldout']}" for w in qa["windows"][-6:])
    more = len(qa["windows"]) - 6
    shown = f" (train+held-out: {'…, ' if more > 0 else ''}{counts})" if counts else ""
    hint = (
        "use a repository with more closed issues fixed by merged pull requests"
        if source.comments
        else "pass --comments so that maintainers' answers count too, or use a repository with "
        "more closed issues fixed by merged pull requests"
    )
    n = len(qa["windows"])
    return (
        f"{source.repo}: found {qa['total']} qa pairs in {n} window{'' if n == 1 else 's'}{shown}; "
        f"the demo needs at least {MIN_WINDOWS} consecutive windows with both training and "
        f'held-out examples. {hint[0].upper()}{hint[1:]} (that say "Fixes #N").'
    )
