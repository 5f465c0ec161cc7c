"""Mixed precision for training: bf16 matmuls where the hardware does them natively.

A CPU with AVX-512 BF16 or AMX (``avx512_bf16`` / ``amx_bf16`` in ``/proc/cpuinfo``) multiplies
bf16 matrices at about twice its fp32 rate (``bench/train_throughput.py`` measures both
ceilings); a GPU with bf16 support does so too. With ``precision="bf16"`` the training forward
pass runs under :func:`torch.autocast`: the frozen base weights' matmuls (projections, MLPs,
attention) take bf16 inputs and accumulate in fp32, while everything autocast leaves alone
stays fp32: the residual stream, the norms, the LoRA weights themselves and their optimizer
state (the master copy), the loss. The answer-token head, whose logits set the loss, runs in
fp32 (:mod:`~adaptune.train.loss`). The saved adapter is fp32 either way.

``auto`` (the default) picks ``bf16`` only where it is native and ``fp32`` elsewhere: on a CPU
without those instructions bf16 is emulated and slower than fp32. ``ADAPTUNE_TRAIN_PRECISION``
(``fp32`` or ``bf16``, read through :func:`adaptune.config.train_precision`) overrides what
``auto`` picks, for every run on the machine (the test suite sets ``fp32`` so that its numbers do
not depend on the CPU it runs on).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Literal

import torch

from adaptune.config import TRAIN_PRECISION_ENV, train_precision
from adaptune.train.config import PRECISIONS

_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
ENV = TRAIN_PRECISION_ENV
"""Environment variable that says what ``auto`` means on this machine (``fp32`` or ``bf16``)."""


@cache
def native_bf16_cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU multiplies bf16 natively (AVX-512 BF16 or AMX); ``False`` if unknown."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            return any(flag in flags for flag in _CPU_FLAGS)
    return False


def resolve(precision: str, device: torch.device) -> Literal["fp32", "bf16"]:
    """``precision`` made concrete for ``device``: ``auto`` becomes ``bf16`` where native."""
    if precision in ("fp32", "bf16"):
        return precision  # type: ignore[return-value]
    if precision != "auto":
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    chosen = train_precision()
    if chosen is not None:
        return chosen
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if native_bf16_cpu() else "fp32"
    return "fp32"


@contextmanager
def autocast(precision: str, device: torch.device) -> Iterator[None]:
    """Inside, ``bf16`` runs the forward pass under autocast; ``fp32`` changes nothing."""
    if precision != "bf16":
        yield
        return
    with torch.autocast(device.type, dtype=torch.bfloat16):
        yield


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype autocast computes matmuls in on ``device``, or ``None`` outside autocast (for
    custom autograd functions, which autocast does not reach into for the backward)."""
    kind = device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else None


@contextmanager
def low_precision_weights(model: torch.nn.Module, precision: str) -> Iterator[int]:
    """Inside, with ``bf16``, the frozen ``nn.Linear`` weights of ``model`` (not its output
    head) are bf16 copies, so autocast does not cast them again in every forward pass (it
    caches casts only of weights that train); yields how many were swapped. The fp32 weights
    are put back on exit, untouched, also when the run inside fails.

    The copies cost half the swapped weights' size. The fp32 weights are kept rather than
    split into a bf16 and a 16-bit remainder: the base model's weights are memory-mapped from
    its safetensors, so dropping them frees nothing, and a version that split them used more
    memory at peak and trained slower (``bench/results/hand_measurements.md``)."""
    if precision != "bf16":
        yield 0
        return
    head = getattr(model, "get_output_embeddings", lambda: None)()
    inner = getattr(model, "get_base_model", lambda: model)()
    head = head if head is not None else getattr(inner, "get_output_embeddings", lambda: None)()
    kept: list[tuple[torch.nn.Linear, torch.nn.Parameter]] = []
    copies: dict[int, torch.nn.Parameter] = {}  # a weight shared by modules: one shared copy
    try:
        for module in model.modules():
            weight = getattr(module, "weight", None)
            if type(module) is not torch.nn.Linear or module is head or weight is None:
                continue
            if weight.requires_grad or weight.dtype != torch.float32:
                continue
            if id(weight) not in copies:
                copies[id(weight)] = torch.nn.Parameter(weight.detach().to(torch.bfloat16), False)
            kept.append((module, weight))
            module.weight = copies[id(weight)]
        yield len(kept)
    finally:
        for module, weight in kept:
            module.weight = weight
