"""A training run's settings (:class:`TrainConfig`) and what it hands back (:class:`TrainResult`).

TrainConfig is declared in :mod:`adaptune.config`, below every stage (the command line makes its
options from it without loading PyTorch); it is handed on from here with its literal types.

The run's identity is :func:`run_hash`: the config, the examples, the base model's weights and
the parent adapter. A checkpoint carries it, so resuming with anything else changed is refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adaptune.config import (
    PRECISIONS,
    STRATEGIES,
    TARGETS,
    DropoutDraw,
    Precision,
    Strategy,
    Target,
    TrainConfig,
)
from adaptune.types import Example

__all__ = [
    "PRECISIONS",
    "STRATEGIES",
    "TARGETS",
    "DropoutDraw",
    "Precision",
    "Strategy",
    "Target",
    "TrainConfig",
    "TrainResult",
    "data_hash",
    "run_hash",
]


@dataclass(frozen=True, slots=True)
class TrainResult:
    """What :func:`adaptune.train.train` produced."""

    adapter_dir: Path
    """The adapter in PEFT format (``adapter_model.safetensors`` + ``adapter_config.json``)."""
    cost: dict[str, float]
    """``examples``, ``tokens`` (real, not padding), ``seconds``, ``steps``, ``tokens_per_s``."""
    final_loss: float
    """Mean answer-token loss of the last optimizer step."""
    losses: list[float]
    """Mean answer-token loss of every optimizer step, in order."""
    config_hash: str
    """:func:`run_hash` of the run: config, examples, base weights and parent adapter."""
    manifest: dict[str, Any] = field(default_factory=dict)
    """The ``adaptune-train.json`` written beside the adapter (base model, parent, data hash)."""


def data_hash(examples: Sequence[Example]) -> str:
    """Content hash of the training examples (ids, questions, answers and retrieved context)."""
    digest = hashlib.sha256()
    for ex in sorted(examples, key=lambda e: e.id):
        context = json.dumps(ex.meta.get("context") or [], sort_keys=True)
        for part in (ex.id, ex.question, ex.answer, context):
            digest.update(part.encode())
            digest.update(b"\0")
    return digest.hexdigest()


_NOT_IN_HASH = ("checkpoint_every", "grad_checkpointing", "release_memory", "fast")
"""Settings that change how a run is executed but not what it computes."""


def run_hash(config: TrainConfig, data: str, base_sha256: str, parent_sha256: str | None) -> str:
    """Identity of a run; equal hashes mean a checkpoint of one may resume the other."""
    settings = config.to_dict()
    for name in _NOT_IN_HASH:
        settings.pop(name)
    payload = {
        "config": settings,
        "data": data,
        "base": base_sha256,
        "parent": parent_sha256,
    }
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
