"""RMSNorm with a frozen weight that keeps only its input for the backward pass.

Llama-style norms compute ``w · (x / rms(x))``. Run op by op, autograd keeps the input, the
reciprocal RMS and the normalised ``x / rms(x)`` (a second ``hidden_size`` vector per token, in
fp32), and its backward pass goes through every op of the forward in turn: about a dozen passes
over the ``(tokens, hidden)`` tensor. With the weight frozen (LoRA trains no norm)
:class:`_FrozenRMSNorm` keeps the input and one reciprocal RMS per token, and computes the
input's gradient in closed form, ``rstd · (g·w − n · mean(g·w · n))`` with ``n = x · rstd``, in
six passes; where the compiled kernels run (:mod:`~adaptune.train.fast.fused`, fp32 inputs) the
forward and the backward are one pass each. SmolLM2-135M has 61 norms, so the element-wise
rest of a step shrinks (``bench/train_profile.py``; before and after:
``bench/results/hand_measurements.md``), with the same losses.
:func:`frozen_norms` swaps it in for a training run; a norm that computes something else
(checked on one of each class) or whose weight trains keeps its own path.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

import adaptune.train.fast.fused as fused
from adaptune.train.fast.swap import training_forward


def _rms_norm(
    x: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Llama's RMSNorm of ``x`` (in fp32 inside, as Llama does) and the reciprocal RMS."""
    h = x.to(torch.float32)
    rstd = torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * (h * rstd).to(x.dtype), rstd


class _FrozenRMSNorm(torch.autograd.Function):
    """``weight · x / rms(x)`` for a frozen ``weight``; saves ``x`` and the reciprocal RMS."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        out, rstd = fused.rms_norm(x, weight, eps) or _rms_norm(x, weight, eps)
        ctx.save_for_backward(x, weight, rstd)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight, rstd = ctx.saved_tensors
        dx = fused.rms_norm_backward(x, weight, rstd, grad.contiguous())
        if dx is not None:
            return dx, None, None
        n = x.to(torch.float32) * rstd  # a new buffer, reused below
        dn = grad.to(torch.float32) * weight
        dot = (dn * n).mean(-1, keepdim=True)
        dx = dn.sub_(n.mul_(dot)).mul_(rstd)
        return dx.to(x.dtype), None, None


def _eligible(module: nn.Module) -> bool:
    """A Llama-style RMSNorm (1-D ``weight``, float ``variance_epsilon``) that does not train."""
    if not type(module).__name__.endswith("RMSNorm"):
        return False
    weight = getattr(module, "weight", None)
    eps = getattr(module, "variance_epsilon", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 1 or not isinstance(eps, float):
        return False
    return not weight.requires_grad


def _forward(self: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
    if not (self.training and torch.is_grad_enabled()):
        return super(type(self), self).forward(hidden_states)
    return _FrozenRMSNorm.apply(hidden_states, self.weight, self.variance_epsilon)


@torch.no_grad()
def _same(module: nn.Module) -> bool:
    """Whether the module's own forward computes what :func:`_rms_norm` does."""
    weight = module.weight
    x = torch.randn(2, 3, weight.shape[0], device=weight.device, dtype=weight.dtype)
    want = module(x)
    got = _rms_norm(x, weight, module.variance_epsilon)[0]
    tol = 1e-5 if weight.dtype == torch.float32 else 2e-2
    return want.shape == got.shape and bool(torch.allclose(got, want, atol=tol, rtol=tol))


@contextmanager
def frozen_norms(model: nn.Module) -> Iterator[int]:
    """Inside, every eligible RMSNorm of ``model`` trains through :class:`_FrozenRMSNorm`;
    yields how many were swapped (:func:`~adaptune.train.fast.swap.training_forward`: a norm class
    that computes something else, checked on one of each, keeps its own forward)."""
    with training_forward(filter(_eligible, model.modules()), _forward, _same) as swapped:
        yield swapped
