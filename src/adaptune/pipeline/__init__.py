"""The only package that wires several stages together.

- :func:`demo` (in :mod:`~adaptune.pipeline.demos`): ingest the bundled sample or a GitHub
  repository → build the dataset → compare the training strategies (train, evaluate, report).
- :func:`plan` and :func:`run_iteration`: one training iteration of a domain: dataset build →
  retrieved context (memory) → train → register. The parent of an ``adaptive`` run is the
  domain's newest adaptive adapter of an earlier window (or one named with ``parent``, from any
  domain); the run folder is fixed per (strategy, window, build, context), so ``resume`` finds
  its checkpoints.

The CLI, the service's worker and the tests all call these.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adaptune.dataset.artifacts import DatasetError, find_build, iter_examples, read_manifest
from adaptune.errors import ConfigError
from adaptune.store import Store
from adaptune.store.domains import resolve_domain
from adaptune.types import Example

if TYPE_CHECKING:  # the registry is imported where it is used, not when this module loads
    from adaptune.registry.records import AdapterVersion

CONTEXTS = ("retrieved", "none")


@dataclass(frozen=True, slots=True)
class Plan:
    """What an iteration will train on, decided before any model loads."""

    domain: str
    build: str
    window: str
    windows: tuple[str, ...]
    examples: tuple[Example, ...]
    parent: AdapterVersion | None
    """The version it is trained from, or ``None`` (from the base model)."""
    run_dir: Path
    context: str
    """``retrieved`` (similar resolved issues in every prompt) or ``none``."""


def resolve_window(windows: Sequence[str], window: str | None) -> str:
    """A window by name or 1-based position; ``None`` is the latest."""
    if not windows:
        raise DatasetError("The dataset build has no qa windows: nothing to train on.")
    if window is None:
        return windows[-1]
    if window.isdigit():
        index = int(window)
        if not 1 <= index <= len(windows):
            raise ConfigError(f"--window {window}: the build has windows 1..{len(windows)}.")
        return windows[index - 1]
    if window not in windows:
        raise ConfigError(f"--window {window!r} is not in the build ({', '.join(windows)}).")
    return window


def previous_adapter(store: Store, domain: str, windows: Sequence[str], window: str) -> Any:
    """The newest adaptive adapter of ``domain`` trained on a window before ``window``."""
    from adaptune.registry import list_versions

    earlier = set(windows[: windows.index(window)])
    chain = [v for v in list_versions(store, domain) if v.strategy == "adaptive"]
    chain = [v for v in chain if v.window in earlier]
    if not chain:
        return None
    return max(chain, key=lambda v: (windows.index(v.window), v.created_at))


def plan(
    store: Store,
    domain: str | None,
    strategy: str,
    window: str | None,
    context: str = "retrieved",
    parent: str | None = None,
    build_id: str | None = None,
) -> Plan:
    """Decide the examples, the parent and the run folder of one iteration."""
    from adaptune.registry import resolve

    if context not in CONTEXTS:
        raise ConfigError(f"--context must be retrieved or none, not {context!r}.")
    with store.begin() as conn:
        name = resolve_domain(conn, domain).name
    folder = find_build(store.settings.home, name, build_id)
    windows = tuple(w["name"] for w in read_manifest(folder)["tasks"]["qa"]["windows"])
    target = resolve_window(windows, window)
    examples = list(iter_examples(folder, "qa"))
    if context == "retrieved":
        from adaptune.memory.context import memory_index, with_context

        examples = with_context(examples, memory_index(examples))
    chosen = None
    if strategy == "adaptive":
        chosen = (
            resolve(store, None, parent)
            if parent
            else previous_adapter(store, name, windows, target)
        )
    tag = f"{strategy}-{target}-{folder.name}-{context}"
    run_dir = store.settings.home / "runs" / name / tag
    return Plan(name, folder.name, target, windows, tuple(examples), chosen, run_dir, context)


def run_iteration(
    store: Store,
    the_plan: Plan,
    config: Any,
    resume: bool = False,
    progress: Any = None,
    model: Any = None,
    tokenizer: Any = None,
    label: str | None = None,
) -> Any:
    """Train the plan with ``config`` (a TrainConfig) and register the adapter; returns it.

    ``label`` is the strategy name recorded in the registry when it differs from the trainer's
    (``adaptive-no-replay``, ``style-control``).

    Under torchrun every rank trains its shard; rank 0 registers, the others return ``None``.
    """
    from adaptune.registry import register
    from adaptune.train import train
    from adaptune.train.loop import world

    rank, size = world()
    if rank == 0 and not resume and the_plan.run_dir.exists():
        shutil.rmtree(the_plan.run_dir)
    if size > 1:
        from torch import distributed as dist

        dist.barrier()
    parent = the_plan.parent
    result = train(
        the_plan.examples,
        config,
        the_plan.run_dir,
        parent_adapter=parent.path if parent else None,
        model=model,
        tokenizer=tokenizer,
        progress=progress,
        resume=resume,
    )
    if rank != 0:
        return None
    base = result.manifest.get("base", {})
    version = register(
        store,
        the_plan.domain,
        result.adapter_dir,
        strategy=label or config.strategy,
        window=the_plan.window,
        base_model=base.get("id"),
        base_model_hash=base.get("sha256"),
        dataset=the_plan.build,
        parent=f"{parent.domain}:{parent.version}" if parent else None,
        config={
            **config.to_dict(),
            "precision": result.manifest["config"]["precision"],  # what "auto" resolved to
            "context": the_plan.context,
            "replayed": result.manifest.get("replayed"),
        },
        cost=result.cost,
    )
    shutil.rmtree(the_plan.run_dir / "checkpoints", ignore_errors=True)
    return version
