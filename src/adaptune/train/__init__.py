"""Train: examples + parent adapter → a new LoRA adapter, in PEFT format.

:func:`train` is the stage's entry. Reading order: :mod:`~adaptune.train.config` (the run's
settings and hash), :mod:`~adaptune.train.strategies` (which examples),
:mod:`~adaptune.train.model` (base model), :mod:`~adaptune.train.format` (chat template,
answer-only labels, truncation), :mod:`~adaptune.train.packing`, :mod:`~adaptune.train.lora`,
:mod:`~adaptune.train.dropout` (the LoRA dropout draw), :mod:`~adaptune.train.loss` (head only
at answer positions), :mod:`~adaptune.train.precision` (bf16 where native),
:mod:`~adaptune.train.memory`, :mod:`~adaptune.train.loop` and
:mod:`~adaptune.train.checkpoint`. The CPU speed-ups that change how a step runs but not what it
computes live in :mod:`adaptune.train.fast`, applied by one call
(:func:`~adaptune.train.fast.accelerate`, off with ``TrainConfig.fast=False``).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from adaptune.config import load_settings
from adaptune.train import lora, precision
from adaptune.train.checkpoint import CheckpointError
from adaptune.train.config import TrainConfig, TrainResult, data_hash, run_hash
from adaptune.train.dropout import share_lora_dropout
from adaptune.train.fast import accelerate
from adaptune.train.format import Encoded, encode_example
from adaptune.train.loop import LoopState, Progress, ProgressFn, device, run, world
from adaptune.train.loss import causal_lm, head_only_matches
from adaptune.train.memory import return_freed_memory
from adaptune.train.model import BaseInfo, describe, load_base
from adaptune.train.packing import collate, isolates, pack
from adaptune.train.strategies import Selection, select
from adaptune.types import Example

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "BaseInfo",
    "CheckpointError",
    "Progress",
    "TrainConfig",
    "TrainResult",
    "load_base",
    "train",
]

log = logging.getLogger(__name__)


def train(
    examples: Sequence[Example],
    config: TrainConfig,
    out_dir: Path,
    parent_adapter: Path | None = None,
    model: PreTrainedModel | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    progress: ProgressFn | None = None,
    resume: bool = False,
) -> TrainResult:
    """Train a LoRA adapter on ``examples`` as ``config`` says, saved in ``out_dir/adapter``.

    ``parent_adapter`` is continued under the ``adaptive`` strategy (and ignored otherwise).
    A ``model`` passed in is used with its ``tokenizer`` and handed back without the LoRA
    layers; otherwise ``config.model`` is loaded (see :func:`load_base`). Checkpoints go to
    ``out_dir/checkpoints``; ``resume=True`` continues from the latest one.
    """
    out_dir = Path(out_dir)
    chosen = select(examples, config.strategy, config.window, config.replay_share, config.seed)
    parent = Path(parent_adapter) if parent_adapter and chosen.from_parent else None
    if parent_adapter and parent is None:
        log.info("Strategy %s starts from the base model; parent adapter ignored", config.strategy)
    model, tokenizer, base = _base(config, model, tokenizer)
    config = replace(config, precision=precision.resolve(config.precision, device()))
    encoded = [encode_example(tokenizer, ex, config.max_len) for ex in chosen.examples]
    parent_sha = lora.parent_sha256(parent) if parent else None
    digest = run_hash(config, data_hash(chosen.examples), base.sha256, parent_sha)
    _seed(config.seed)
    if config.release_memory:
        return_freed_memory()
    peft_model = lora.load_parent(model, parent) if parent else _attach(model, config)
    if config.dropout_draw == "shared":
        share_lora_dropout(peft_model)
    try:
        peft_model.to(device())
        with accelerate(peft_model, config):
            head_only, packs = _checks(peft_model, encoded[0])
            rows = pack(encoded, config.max_len, enabled=packs)
            root, pad_id = out_dir / "checkpoints", tokenizer.pad_token_id
            with precision.low_precision_weights(peft_model, config.precision):
                state = run(
                    peft_model, rows, config, root, digest, pad_id, progress, resume, head_only
                )
        info = _manifest(config, chosen, base, parent_sha, digest, state)
        info["parent"] = str(parent) if parent else None
        adapter_dir = out_dir / "adapter"
        if world()[0] == 0:
            lora.save(peft_model, adapter_dir, info)
    finally:
        lora.detach(peft_model)
    return TrainResult(adapter_dir, info["cost"], state.losses[-1], state.losses, digest, info)


def _base(
    config: TrainConfig,
    model: PreTrainedModel | None,
    tokenizer: PreTrainedTokenizerBase | None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, BaseInfo]:
    if model is None:
        return load_base(config.model, load_settings().home)
    if tokenizer is None:
        raise TypeError("train(): a model passed in needs its tokenizer too")
    return model, tokenizer, describe(model, config.model)


def _attach(model: PreTrainedModel, config: TrainConfig) -> PeftModel:
    return lora.attach(model, config.lora_r, config.lora_alpha, config.lora_dropout, config.target)


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


CHECK_TOKENS = 96
"""The head-only check runs on the last this-many tokens of an example (its answer tokens among
them): it compares two computations of the same loss, which any ids serve, so a short tail
costs a fraction of a whole example (``bench/results/hand_measurements.md``)."""


def _checks(model: torch.nn.Module, example: Encoded) -> tuple[bool, bool]:
    """Whether this model allows the head-only loss and packing (see loss.py, packing.py)."""
    example = Encoded(example.input_ids[-CHECK_TOKENS:], example.labels[-CHECK_TOKENS:])
    batch = collate(pack([example], len(example)), pad_id=0)
    on = device()
    head_only = head_only_matches(model, batch["input_ids"].to(on), batch["labels"].to(on))
    packs = isolates(causal_lm(model), on)
    if not head_only:
        log.warning("This model's logits differ from its head's output; using full logits")
    if not packs:
        log.warning("This model leaks attention across packed examples; one example per row")
    return head_only, packs


def _manifest(
    config: TrainConfig,
    chosen: Selection,
    base: BaseInfo,
    parent_sha: str | None,
    digest: str,
    state: LoopState,
) -> dict[str, Any]:
    """What the adapter came from and what it cost (written as ``adaptune-train.json``)."""
    cost = {
        "examples": len(chosen.examples),
        "tokens": state.tokens,
        "seconds": round(state.seconds, 3),
        "steps": state.step,
        "tokens_per_s": round(state.tokens / max(state.seconds, 1e-9), 1),
    }
    return {
        "config": config.to_dict(),
        "config_hash": digest,
        "base": asdict(base),
        "parent_sha256": parent_sha,
        "window": chosen.window,
        "replayed": chosen.replayed,
        "data_hash": data_hash(chosen.examples),
        "processes": world()[1],
        "cost": cost,
        "final_loss": state.losses[-1],
    }
