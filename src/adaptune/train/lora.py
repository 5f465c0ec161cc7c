"""LoRA adapters through PEFT: attach a new one, continue a parent one, save in PEFT format.

The saved folder (``adapter_model.safetensors`` + ``adapter_config.json``) loads with
``PeftModel.from_pretrained`` and is what vLLM serves with ``--enable-lora``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from adaptune.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from peft import PeftModel
    from transformers import PreTrainedModel

log = logging.getLogger(__name__)

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
"""Module names LoRA targets by default: the attention projections of Llama-style models."""
WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"
ADAPTER_FILES = (WEIGHTS, CONFIG)
"""The files without which a folder is not a PEFT adapter."""
MANIFEST = "adaptune-train.json"
"""Written beside the adapter: config, base model, parent, data hash, cost."""


def attach(
    model: PreTrainedModel,
    r: int = 16,
    alpha: int = 32,
    dropout: float = 0.05,
    target: str = "attention",
) -> PeftModel:
    """A new LoRA adapter on ``model`` (changed in place; only the LoRA weights train)."""
    from peft import LoraConfig, get_peft_model

    modules: str | list[str] = "all-linear" if target == "all-linear" else list(ATTENTION)
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=modules,
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        with quiet_peft():
            return get_peft_model(model, config)
    except ValueError as exc:
        raise ConfigError(
            f"LoRA cannot target {modules} in this model ({exc}); use target='all-linear'."
        ) from None


def load_parent(model: PreTrainedModel, path: Path) -> PeftModel:
    """``model`` with the parent adapter at ``path`` loaded as trainable, to continue from it."""
    from peft import PeftModel

    parent_sha256(path)
    with quiet_peft():
        return PeftModel.from_pretrained(model, str(path), is_trainable=True)


def parent_sha256(path: Path) -> str:
    """The sha256 of a parent adapter's weights, after checking it is a PEFT adapter folder."""
    path = Path(path)
    missing = [name for name in ADAPTER_FILES if not (path / name).exists()]
    if missing:
        raise ConfigError(
            f"Parent adapter {path} lacks {', '.join(missing)}; pass a folder saved by "
            "adaptune (PEFT format) or train from the base model."
        )
    return sha256(path / ADAPTER_FILES[0])


def save(model: PeftModel, folder: Path, manifest: dict | None = None) -> Path:
    """Save the adapter in PEFT format into ``folder``, atomically (temp folder + rename).

    ``manifest`` is written beside it as ``adaptune-train.json``, with the sha256 of the
    adapter weights added under ``adapter_sha256``.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        model.save_pretrained(str(tmp))
        if manifest is not None:
            manifest["adapter_sha256"] = sha256(tmp / ADAPTER_FILES[0])
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def sha256(path: Path) -> str:
    """Hex sha256 of a file (the adapter weights, for lineage)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def trainable(model: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def detach(model: PeftModel) -> torch.nn.Module:
    """Remove the LoRA layers again, handing the caller's base model back as it came."""
    base = model.unload() if hasattr(model, "unload") else model
    base.eval()
    return base


@contextmanager
def quiet_peft() -> Iterator[None]:
    """Load or wrap a PEFT model without its transformers deprecation warning (see below)."""
    # PEFT 0.21 reads `model.is_gradient_checkpointing`, which transformers 5 deprecates with a
    # FutureWarning. Not ours to fix, and the test suite turns transformers warnings into errors.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing.*deprecated", category=FutureWarning
        )
        yield
