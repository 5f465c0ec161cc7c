"""The only package that wires several stages together.

- :func:`build_dataset` (in :mod:`~adaptune.pipeline.dataset_build`): feedback examples →
  dataset build → the build's triage classifier.
- :func:`plan` and :func:`run_iteration`: one training iteration of a domain: dataset build →
  retrieved context (memory) → train → register. The parent of an ``adaptive`` run is the
  domain's newest adaptive adapter of an earlier window (or one named with ``parent``, from any
  domain); the run folder is fixed per (strategy, window, build, context), so ``resume`` finds
  its checkpoints.
- :func:`~adaptune.pipeline.train_job.train_job`: the worker's ``train`` job (build → train
  from production → measure → promotion gate).
- :func:`~adaptune.pipeline.compare.compare`: train each strategy's chain, measure it, report.
- :func:`~adaptune.pipeline.demos.demo`: ingest the bundled sample or a GitHub repository →
  build the dataset → compare the training strategies (train, evaluate, report).

The CLI, the service's worker and the tests all call these.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from adaptune.memory.context import load_qa
from adaptune.pipeline.dataset_build import build_dataset
from adaptune.registry import list_versions, register, resolve
from adaptune.registry.records import AdapterVersion
from adaptune.store import Store
from adaptune.types import Example

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from adaptune.config import TrainConfig
    from adaptune.train.loop import ProgressFn


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


def previous_adapter(
    store: Store, domain: str, windows: Sequence[str], window: str
) -> AdapterVersion | None:
    """The newest adaptive adapter of ``domain`` trained on a window before ``window``."""
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
    data = load_qa(store, domain, context, window, build_id)
    chosen = None
    if strategy == "adaptive":
        chosen = (
            resolve(store, None, parent)
            if parent
            else previous_adapter(store, data.domain, data.windows, data.window)
        )
    tag = f"{strategy}-{data.window}-{data.build}-{context}"
    run_dir = store.settings.home / "runs" / data.domain / tag
    return Plan(
        data.domain, data.build, data.window, data.windows, data.examples, chosen, run_dir, context
    )


def run_iteration(
    store: Store,
    the_plan: Plan,
    config: TrainConfig,
    resume: bool = False,
    progress: ProgressFn | None = None,
    model: PreTrainedModel | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    label: str | None = None,
) -> AdapterVersion | None:
    """Train the plan with ``config`` (a TrainConfig) and register the adapter; returns it.

    ``label`` is the strategy name recorded in the registry when it differs from the trainer's
    (``adaptive-no-replay``, ``style-control``).

    Under torchrun every rank trains its shard; rank 0 registers, the others return ``None``.
    """
    # torch loads here, when a run trains: `adaptune dataset build` imports this package too.
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


__all__ = ["Plan", "build_dataset", "plan", "previous_adapter", "run_iteration"]
