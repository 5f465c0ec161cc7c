"""A training run's settings (:class:`TrainConfig`) and what it hands back (:class:`TrainResult`).

The run's identity is :func:`run_hash`: the config, the examples, the base model's weights and
the parent adapter. A checkpoint carries it, so resuming with anything else changed is refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from adaptune.errors import ConfigError
from adaptune.types import Example

Strategy = Literal["adaptive", "from-base", "cumulative"]
Target = Literal["attention", "all-linear"]
DropoutDraw = Literal["shared", "peft"]
Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
STRATEGIES: tuple[str, ...] = ("adaptive", "from-base", "cumulative")
TARGETS: tuple[str, ...] = ("attention", "all-linear")


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Settings of one training run; validated when built."""

    strategy: Strategy = "adaptive"
    """``adaptive`` (parent adapter + replay), ``from-base`` (this window) or ``cumulative``."""
    window: str | None = None
    """The window to train on; ``None`` means the latest window among the examples."""
    max_steps: int | None = None
    """Optimizer steps; ``None`` derives them from ``epochs``."""
    epochs: float = 1.0
    """Passes over the packed rows when ``max_steps`` is not set."""
    lr: float = 2e-4
    """Peak learning rate of AdamW (after warm-up)."""
    batch_size: int = 4
    """Packed rows per accumulation step, per process."""
    grad_accum: int = 1
    """Accumulation steps per optimizer step (rows per step = batch_size × grad_accum ×
    processes)."""
    forward_tokens: int | None = 1024
    """Most tokens (padding included) one forward pass takes: a step's rows go through the
    model in groups that fit, their gradients accumulated (one row at least per pass). It bounds
    activation memory (about 1 GB per 1,024 tokens on SmolLM2-135M) without changing what a step
    learns. ``None``: ``batch_size`` rows per pass."""
    max_len: int = 1024
    """Tokens per packed row, and the longest a single example may be after truncation."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA input during training."""
    dropout_draw: DropoutDraw = "shared"
    """``shared``: sparse drops, one draw per input shared by the projections that read it
    (:mod:`adaptune.train.dropout`, much cheaper on a CPU); ``peft``: PEFT's own per-module
    ``nn.Dropout``."""
    target: Target = "attention"
    """``attention`` (q, k, v, o projections) or ``all-linear`` (every linear but the head)."""
    replay_share: float = 0.25
    """``adaptive`` only: earlier windows' examples replayed, as a share of this window's count."""
    seed: int = 0
    """Seeds LoRA initialisation, data order, dropout and replay selection."""
    checkpoint_every: int = 50
    """Optimizer steps between checkpoints; 0 turns them off."""
    grad_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about a third more time."""
    release_memory: bool = False
    """Hand freed activations back to the system at once (glibc; see
    :mod:`adaptune.train.memory`): peak RSS stays at what is live, but every fresh page
    faults (measured by hand: 165 against 223 real tokens/s at two 1,024-token rows per
    forward; ``bench/train_throughput.py --release-memory`` re-measures it)."""
    fast: bool = True
    """Apply the CPU speed-ups of :mod:`adaptune.train.fast` for the run (its
    :func:`~adaptune.train.fast.accelerate`): each packed example attended on its own, in bf16
    on a CPU by the blocked or compiled kernel with the rotary embedding inside, frozen MLPs and
    RMSNorms with leaner backward passes and one-pass compiled kernels. They change how a step
    runs, not what it computes (the same sums, rounded differently in bf16), so the run hash
    leaves this out. ``False``: the model's own transformers forward everywhere, to compare or
    debug. ``ADAPTUNE_NATIVE_KERNELS=0`` turns off the compiled kernels only; the LoRA dropout
    draw is ``dropout_draw``'s either way."""
    precision: Precision = "auto"
    """``bf16``: the forward pass's matmuls in bf16 under autocast, LoRA weights, optimizer and
    loss in fp32 (:mod:`adaptune.train.precision`); ``fp32``: everything in fp32; ``auto``:
    ``bf16`` where the CPU or GPU does bf16 natively, else ``fp32``. :func:`adaptune.train.train`
    records the precision it resolved to."""
    model: str | None = None
    """Base model: a local folder or a Hugging Face id already cached; ``None`` for the default."""
    warmup_ratio: float = 0.05
    """Share of the steps spent warming the learning rate up linearly, before the cosine decay."""
    weight_decay: float = 0.0
    """AdamW weight decay on the LoRA weights."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm; 0 turns clipping off."""

    def __post_init__(self) -> None:
        _check(self.strategy in STRATEGIES, f"strategy must be one of {', '.join(STRATEGIES)}")
        _check(self.target in TARGETS, f"target must be one of {', '.join(TARGETS)}")
        _check(self.max_steps is None or self.max_steps > 0, "max_steps must be positive")
        _check(self.epochs > 0, "epochs must be positive")
        _check(0 < self.lr < 1, "lr must be in (0, 1)")
        for name in ("batch_size", "grad_accum", "lora_r", "lora_alpha"):
            _check(getattr(self, name) > 0, f"{name} must be positive")
        _check(self.max_len >= 64, "max_len must be at least 64 tokens")
        _check(self.forward_tokens is None or self.forward_tokens > 0, "forward_tokens > 0")
        _check(0 <= self.lora_dropout < 1, "lora_dropout must be in [0, 1)")
        _check(self.dropout_draw in ("shared", "peft"), "dropout_draw must be shared or peft")
        _check(self.precision in PRECISIONS, "precision must be auto, fp32 or bf16")
        _check(0 <= self.replay_share <= 10, "replay_share must be in [0, 10]")
        _check(self.checkpoint_every >= 0, "checkpoint_every must be 0 (off) or positive")
        _check(0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)")
        _check(self.weight_decay >= 0 and self.max_grad_norm >= 0, "decay and clipping are >= 0")

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON values."""
        return asdict(self)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(f"Training config: {message}.")


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
