"""LoRA dropout that costs almost nothing on a CPU: sparse drops, one draw per shared input.

PEFT gives every LoRA module its own ``nn.Dropout`` on the module's input. On a CPU that is a
large share of a small model's step (``bernoulli_`` is among the largest element-wise costs of
a SmolLM2-135M step, ``bench/results/hand_measurements.md``, and each mask is a full float tensor
kept for the backward pass). Two
changes, with the same dropout rate and the same expectation:

- **Sparse drops.** Only a share ``p`` of the elements is dropped, so instead of a dense
  Bernoulli mask the draw is ``k`` random flat indices with ``k = −n·ln(1 − p)``: with
  replacement, each element is then dropped with probability ``1 − (1 − 1/n)^k ≈ p``. The
  survivors are scaled by ``1 / (1 − p)`` as usual, and only the indices (8 bytes × 5 % of the
  elements) are kept for the backward pass instead of a float mask.
- **One draw per input.** The q, k and v projections (and gate/up with ``all-linear``) read the
  same hidden states; they share one dropped copy instead of three masks. Each projection still
  sees its input with 5 % of it dropped, so the regularisation per weight is unchanged; what
  changes is that the three draws are no longer independent.

The saved adapter is plain PEFT (dropout has no weights). The draws come from torch's global
generator, so checkpoints that save RNG state still resume bit-exactly.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import torch
from torch import nn


class _SparseDrop(torch.autograd.Function):
    """Zero ``idx`` (flat indices) of ``x`` and scale the rest; the backward does the same."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, idx: torch.Tensor, scale: float) -> torch.Tensor:
        out = x.mul(scale)
        out.view(-1).index_fill_(0, idx, 0.0)
        ctx.save_for_backward(idx)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (idx,) = ctx.saved_tensors
        out = grad.mul(ctx.scale).contiguous()
        out.view(-1).index_fill_(0, idx, 0.0)
        return out, None, None


def sparse_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Dropout of rate ``p`` drawn as random flat indices (see the module docstring)."""
    if p <= 0.0:
        return x
    x = x.contiguous()
    n = x.numel()
    k = max(1, round(-n * math.log1p(-p)))
    idx = torch.randint(0, n, (k,), device=x.device)
    return _SparseDrop.apply(x, idx, 1.0 / (1.0 - p))


class SharedDropout(nn.Module):
    """LoRA input dropout shared by the sibling modules that read the same tensor.

    ``memo`` is one dict per parent module (an attention block): the first sibling to see an
    input draws its drops; the others get the same dropped tensor. The memo holds the input
    only weakly and is replaced by the next input, so it keeps nothing alive past one pass that
    the backward pass does not need anyway.
    """

    def __init__(self, p: float, memo: dict[str, Any]) -> None:
        super().__init__()
        self.p, self.memo = p, memo

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with drops (training) or unchanged (evaluation)."""
        if not self.training or self.p <= 0.0:
            return x
        memo = self.memo
        seen = memo.get("x")
        if seen is not None and seen() is x and memo["version"] == x._version:
            return memo["out"]
        out = sparse_dropout(x, self.p)
        memo.update(x=weakref.ref(x), version=x._version, out=out)
        return out

    def extra_repr(self) -> str:
        return f"p={self.p}, shared"


def share_lora_dropout(model: nn.Module) -> int:
    """Swap PEFT's LoRA ``nn.Dropout`` modules for :class:`SharedDropout`; returns how many."""
    memos: dict[str, dict[str, Any]] = {}
    swapped = 0
    for name, module in model.named_modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, nn.ModuleDict):
            continue
        parent = name.rsplit(".", 1)[0] if "." in name else ""
        for key, drop in list(dropouts.items()):
            if isinstance(drop, nn.Dropout) and drop.p > 0:
                memo = memos.setdefault(f"{parent}/{drop.p}", {})
                dropouts[key] = SharedDropout(drop.p, memo)
                dropouts[key].train(drop.training)
                swapped += 1
    return swapped
