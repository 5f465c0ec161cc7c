"""A gated MLP with frozen weights that keeps two activations for the backward pass, not three.

Llama-style blocks compute ``down(silu(gate(x)) * up(x))``. Run op by op, autograd keeps
``gate(x)`` (for the SiLU), ``silu(gate(x))`` and ``up(x)`` (for the product) of every token in
every layer: three ``intermediate_size`` vectors per token, the largest activations of the model
(SmolLM2-135M: 6 MB each per 1,024 tokens, 540 MB per row over 30 layers). With the three weights
frozen (LoRA on the attention projections, the default) :class:`_FrozenGatedMLP` keeps
``gate(x)`` and ``up(x)`` only and recomputes the SiLU, an element-wise op, in the backward pass:
a third less MLP memory for the same numbers. :func:`frozen_mlps` swaps it in for a training run;
MLPs whose projections carry LoRA layers or train (``--target all-linear``) keep their own path.
Under autocast (bf16 training, :mod:`~adaptune.train.precision`) the input and weights are cast
before the function runs, so its backward, which autocast does not reach, computes in bf16 too.
``silu(gate) · up`` and its gradients are one compiled pass each where the kernels run
(:mod:`~adaptune.train.fast.fused`), PyTorch operations elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

import adaptune.train.fast.fused as fused
from adaptune.train.fast.swap import training_forward
from adaptune.train.precision import autocast_dtype


def _gated(
    x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``down(silu(gate(x)) * up(x))``, with ``gate(x)`` and ``up(x)``."""
    gate, up = F.linear(x, w_gate), F.linear(x, w_up)
    hidden = fused.gated_silu(gate, up)
    return F.linear(F.silu(gate) * up if hidden is None else hidden, w_down), gate, up


class _FrozenGatedMLP(torch.autograd.Function):
    """``down(silu(gate(x)) * up(x))`` for frozen, bias-free weights; saves gate(x) and up(x)."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor
    ) -> torch.Tensor:
        out, gate, up = _gated(x, w_gate, w_up, w_down)
        ctx.save_for_backward(gate, up, w_gate, w_up, w_down)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        gate, up, w_gate, w_up, w_down = ctx.saved_tensors
        grad_h = grad @ w_down  # (…, intermediate)
        grad_gate, grad_up = fused.gated_silu_backward(gate, up, grad_h) or _silu_grads(
            gate, up, grad_h
        )
        width = gate.shape[-1]
        grad_x = (grad_gate.reshape(-1, width) @ w_gate).addmm_(grad_up.reshape(-1, width), w_up)
        return grad_x.view(*gate.shape[:-1], -1), None, None, None


def _silu_grads(
    gate: torch.Tensor, up: torch.Tensor, grad_h: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradients of ``silu(gate) · up`` for ``gate`` and ``up`` (PyTorch; ``grad_h`` is
    overwritten)."""
    sig = torch.sigmoid(gate)
    silu = gate * sig
    grad_up = grad_h * silu
    # d silu(g) / dg = sig · (1 + g · (1 − sig)); reuse buffers, nothing else needs them
    grad_gate = grad_h.mul_(up).mul_(sig.mul_(silu.neg_().add_(gate).add_(1.0)))
    return grad_gate, grad_up


def _eligible(module: nn.Module) -> bool:
    """A gated SiLU MLP whose three projections are plain, frozen, bias-free ``nn.Linear``."""
    parts = [getattr(module, name, None) for name in ("gate_proj", "up_proj", "down_proj")]
    if not all(type(p) is nn.Linear for p in parts):
        return False
    if any(p.bias is not None or p.weight.requires_grad for p in parts):
        return False
    act = getattr(module, "act_fn", None)
    return isinstance(act, nn.SiLU) or type(act).__name__ == "SiLUActivation"


def _forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if not (self.training and torch.is_grad_enabled()):
        return super(type(self), self).forward(x)
    weights = (self.gate_proj.weight, self.up_proj.weight, self.down_proj.weight)
    dtype = autocast_dtype(x.device)
    if dtype is None:
        return _FrozenGatedMLP.apply(x, *weights)
    # Under autocast (bf16 training) cast here, as autocast would: the backward then computes
    # in the same dtype, where autocast is off.
    with torch.autocast(x.device.type, enabled=False):
        return _FrozenGatedMLP.apply(x.to(dtype), *(w.to(dtype) for w in weights))


@torch.no_grad()
def _same(module: nn.Module) -> bool:
    """Whether the module's own forward computes what :class:`_FrozenGatedMLP` does."""
    weight = module.gate_proj.weight
    x = torch.randn(2, 3, weight.shape[1], device=weight.device, dtype=weight.dtype)
    want = module(x)
    got = _gated(x, weight, module.up_proj.weight, module.down_proj.weight)[0]
    tol = 1e-4 if weight.dtype == torch.float32 else 2e-2
    return bool(torch.allclose(got, want, atol=tol, rtol=tol))


@contextmanager
def frozen_mlps(model: nn.Module) -> Iterator[int]:
    """Inside, every eligible MLP of ``model`` trains through :class:`_FrozenGatedMLP`; yields
    how many were swapped (:func:`~adaptune.train.fast.swap.training_forward`: their own class is
    back on exit, and an MLP class that computes something else, checked on one of each, keeps
    its own forward)."""
    with training_forward(filter(_eligible, model.modules()), _forward, _same) as swapped:
        yield swapped
