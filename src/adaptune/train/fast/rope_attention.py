"""Llama-style attention layers that leave the rotary embedding to the compiled kernel in training.

transformers' attention layer rotates the queries and keys (``x·cos + rotate_half(x)·sin``)
before it calls the attention function. In bf16 training the projections come out in bf16 and
``cos``/``sin`` are fp32, so the rotation makes fp32 copies of q and k (a multiply, a negation,
a concatenation, a second multiply and a sum each, and as many again backward), for what is a
few multiply-adds per element (what inside the kernel gains:
``bench/results/hand_measurements.md``).
:func:`adaptune.train.fast.native.causal_attention` can rotate q and k itself as it packs them, and
send the gradients back through the rotation as it writes them.

:func:`rope_in_kernel` swaps a training-only ``forward`` into the model's attention layers (by
subclass, :func:`~adaptune.train.fast.swap.training_forward`): the layer's own projections (with
their LoRA layers), then the compiled kernel per packed example with the rotation inside, then
the output projection. It runs only where the packed path would reach the compiled kernel anyway:
training with gradients, bf16 autocast on a CPU with the kernel available, no attention mask,
no cache, positions that restart per example (:mod:`~adaptune.train.fast.attention`); everything
else, evaluation and generation included, goes to the layer's own forward. A layer class is
swapped only if the replacement gives its own forward's output on a packed test input (checked
on one layer of each class): a model that also normalises q and k, or rotates differently,
keeps its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
from torch import nn

import adaptune.train.fast.attention as attention
import adaptune.train.fast.native as native
from adaptune.train.fast.swap import training_forward

_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")


def _eligible(module: nn.Module) -> bool:
    """A Llama-style attention layer: the four projections, 64-wide heads, a config."""
    if not all(isinstance(getattr(module, p, None), nn.Module) for p in _PROJECTIONS):
        return False
    if getattr(module, "head_dim", None) != native.HEAD_DIM or not hasattr(module, "config"):
        return False
    return native.available(native.HEAD_DIM)


def _lengths(self: nn.Module, args: tuple, kwargs: dict[str, Any]) -> list[list[int]] | None:
    """The packed examples' lengths where the fused path applies to this call, else ``None``."""
    hidden = kwargs.get("hidden_states")
    if args or hidden is None or not (self.training and torch.is_grad_enabled()):
        return None
    if kwargs.get("attention_mask") is not None or kwargs.get("position_embeddings") is None:
        return None
    if kwargs.get("cache") is not None or kwargs.get("past_key_values") is not None:
        return None
    if getattr(self.config, "_attn_implementation", None) != attention.NAME:
        return None
    dropout = getattr(self, "attention_dropout", 0.0) if self.training else 0.0
    if not attention._blocked_bf16(hidden, dropout):
        return None
    position_ids = kwargs.get("position_ids")
    if position_ids is None:
        return None
    return attention._segments_once(position_ids, hidden.shape[0])


def _fused(self: nn.Module, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
           lengths: list[list[int]]) -> torch.Tensor:  # fmt: skip
    """The layer's output: projections, per-example attention with the rotation inside, output
    projection."""
    batch, length = hidden.shape[:2]
    q, k, v = (
        getattr(self, p)(hidden).view(batch, length, -1, self.head_dim).transpose(1, 2)
        for p in _PROJECTIONS[:3]
    )
    kernel = partial(native.causal_attention, scale=self.scaling)
    out = attention._per_example(kernel, q, k, v, lengths, rope=(cos, sin))
    return self.o_proj(out.reshape(batch, length, -1))


def _forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
    lengths = _lengths(self, args, kwargs)
    if lengths is None:
        return super(type(self), self).forward(*args, **kwargs)
    cos, sin = kwargs["position_embeddings"]
    return _fused(self, kwargs["hidden_states"], cos, sin, lengths), None


def _same(module: nn.Module) -> bool:
    """Whether :func:`_fused` gives the layer's own output on two packed examples (bf16, the
    layer and its LoRA dropout in evaluation mode for the check)."""
    width = getattr(module.q_proj, "in_features", None)
    if not isinstance(width, int):
        return False
    parts = [5, 7]
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(1, sum(parts), width, generator=g)
    positions = torch.cat([torch.arange(n) for n in parts])[None]
    inv = 1.0 / (10000 ** (torch.arange(0, module.head_dim, 2).float() / module.head_dim))
    angles = positions[..., None].float() * inv
    cos, sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()
    modes = {m: m.training for m in module.modules()}
    try:
        module.eval()
        with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
            want, _ = module(
                hidden_states=hidden, position_embeddings=(cos, sin), attention_mask=None,
                position_ids=positions,
            )  # fmt: skip
            got = _fused(module, hidden, cos, sin, [parts])
    except Exception:
        return False
    finally:
        for m, mode in modes.items():
            m.training = mode
    err = float((got.float() - want.float()).norm() / want.float().norm().clamp_min(1e-6))
    return want.shape == got.shape and math.isfinite(err) and err < 2e-2


@contextmanager
def rope_in_kernel(model: nn.Module) -> Iterator[int]:
    """Inside, every eligible attention layer of ``model`` trains through the compiled kernel
    with the rotation inside (see the module); yields how many were swapped. Enter it inside
    :func:`~adaptune.train.fast.attention.packed_attention`: the check on one layer of each class
    runs the layer's own packed path."""
    with training_forward(filter(_eligible, model.modules()), _forward, _same) as swapped:
        yield swapped
