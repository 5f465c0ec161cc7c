"""Causal attention of one example in bf16 on a CPU, in blocks of queries: only the causal part.

PyTorch's CPU flash-attention kernel runs no faster in bf16 than in fp32
(``bench/attention_kernel.py``), and its 512-key blocks skip no causal work in examples of up to
512 tokens, so attention took a large share of a bf16 training step (``bench/train_profile.py``;
``bench/results/hand_measurements.md``). :func:`causal_attention` does the same sum with bf16
batched matrix multiplies, which run near the bf16 ceiling, over blocks of :data:`BLOCK` queries:
block ``i`` scores its queries against keys ``0 … end of block i`` only (the causal part plus
the block's own diagonal square, masked), so an example of ``L`` tokens computes about
``L²/2 + L·BLOCK/2`` scores instead of ``L²``. Each block's scores stay small enough to sit in
the cache between the multiply, the softmax and the next multiply.

Grouped-query attention needs no repeated keys: the ``G`` query heads that share a key head are
laid side by side as rows of one matrix (``(kv_heads, queries·G, head_dim)``), so one multiply
serves the whole group, and the key and value gradients come out summed over the group.

The backward pass recomputes each block's probabilities (one more multiply and softmax) rather
than keeping them: keeping them would hold about ``L²/2 · heads`` bf16 values per layer and
example, hundreds of MB per step. What is saved is the scaled queries, the keys and the values,
no more than the flash kernel saves. Scores and probabilities are rounded to bf16, as in
transformers' own eager attention under bf16; the softmax, its backward and the key and value
gradient sums run in fp32 inside. ``tests/test_train_blocked.py`` checks values and gradients
against fp32 attention; ``bench/attention_kernel.py`` times it against the flash kernel (1.5 to
2.7 times as fast) and ``bench/train_profile.py`` its share of a training step. Where the CPU
has AVX-512 BF16 and a compiler, :mod:`adaptune.train.fast.native` does the same sums as one
compiled kernel and training uses that instead; this is the path elsewhere.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd.function import once_differentiable

BLOCK = 128
"""Queries per block: the fastest over all of ``bench/attention_kernel.py``'s cases of 64, 96,
128, 192 and 256 on this CPU."""
_MASKS: dict[tuple[int, int, torch.dtype], torch.Tensor] = {}


def _diagonal_mask(n: int, groups: int, dtype: torch.dtype) -> torch.Tensor:
    """``-inf`` above the diagonal of an ``n × n`` block, each query row repeated per group."""
    key = (n, groups, dtype)
    mask = _MASKS.get(key)
    if mask is None:
        mask = torch.full((n, n), float("-inf"), dtype=dtype).triu(1)
        mask = _MASKS.setdefault(key, mask.repeat_interleave(groups, 0))
    return mask


def _probabilities(rows: torch.Tensor, keys: torch.Tensor, begin: int, end: int) -> torch.Tensor:
    """Softmax of the scores of one block of query rows (``(kv, n·G, d)``) against keys
    ``[0, end)``; the block's own diagonal square ``[begin, end)`` is masked causally."""
    scores = torch.bmm(rows, keys[:, :end].transpose(1, 2))
    n = end - begin
    scores[:, :, begin:end] += _diagonal_mask(n, rows.shape[1] // n, scores.dtype)
    return torch.softmax(scores, -1)


class _BlockedCausal(torch.autograd.Function):
    """``q (heads, L, d)``, ``k, v (kv_heads, L, d)`` → ``(L, heads, d)``; see the module."""

    @staticmethod
    def forward(
        ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float
    ) -> torch.Tensor:
        k_dtype, v_dtype = k.dtype, v.dtype
        kv, length, d = k.shape
        g = q.shape[0] // kv
        bf16 = torch.bfloat16
        # (kv, L, G, d): a block of queries is one contiguous (kv, n·G, d) slab; scaling, the
        # cast to bf16 and the new layout in one pass
        qs = torch.empty(kv, length, g, d, dtype=bf16)
        torch.mul(q.reshape(kv, g, length, d).transpose(1, 2), scale, out=qs)
        k = k.to(bf16, memory_format=torch.contiguous_format)
        v = v.to(bf16, memory_format=torch.contiguous_format)
        ctx.dtypes = (q.dtype, k_dtype, v_dtype)
        out = torch.empty(kv, length, g, d, dtype=bf16)
        for begin in range(0, length, BLOCK):
            end = min(begin + BLOCK, length)
            rows = qs[:, begin:end].reshape(kv, (end - begin) * g, d)
            p = _probabilities(rows, k, begin, end)
            torch.bmm(p, v[:, :end], out=out[:, begin:end].view(kv, (end - begin) * g, d))
        ctx.save_for_backward(qs, k, v)
        ctx.scale = scale
        return out.transpose(0, 1).reshape(length, kv * g, d)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        qs, k, v = ctx.saved_tensors
        kv, length, g, d = qs.shape
        grad_out, grad = grad, torch.empty_like(qs)
        grad.copy_(grad_out.reshape(length, kv, g, d).transpose(0, 1))
        k_scaled = k * ctx.scale
        dq = torch.empty(kv, length, g, d, dtype=qs.dtype)
        dk = torch.zeros(kv, length, d, dtype=torch.float32)
        dv = torch.zeros(kv, length, d, dtype=torch.float32)
        for begin in range(0, length, BLOCK):
            end = min(begin + BLOCK, length)
            n = end - begin
            rows = qs[:, begin:end].reshape(kv, n * g, d)
            p = _probabilities(rows, k, begin, end)
            grad_rows = grad[:, begin:end].reshape(kv, n * g, d)
            dv[:, :end] += torch.bmm(p.transpose(1, 2), grad_rows)
            dp = torch.bmm(grad_rows, v[:, :end].transpose(1, 2))
            ds = torch._softmax_backward_data(dp, p, -1, p.dtype)
            torch.bmm(ds, k_scaled[:, :end], out=dq[:, begin:end].view(kv, n * g, d))
            dk[:, :end] += torch.bmm(ds.transpose(1, 2), rows)
        q_dtype, k_dtype, v_dtype = ctx.dtypes
        dq_heads = torch.empty(kv, g, length, d, dtype=q_dtype)
        dq_heads.copy_(dq.transpose(1, 2))
        return dq_heads.view(kv * g, length, d), dk.to(k_dtype), dv.to(v_dtype), None


def causal_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None
) -> torch.Tensor:
    """Causal attention of one example in bf16: ``q (heads, L, d)``, ``k, v (kv_heads, L, d)``
    (``heads`` a multiple of ``kv_heads``) → ``(L, heads, d)`` in bf16; differentiable.
    Inputs of another dtype are cast to bf16 inside (and their gradients back)."""
    if q.dim() != 3 or k.shape != v.shape or q.shape[1:] != k.shape[1:]:
        raise ValueError(f"shapes q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if q.shape[0] % k.shape[0]:
        raise ValueError(f"{q.shape[0]} query heads do not share {k.shape[0]} key heads evenly")
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    return _BlockedCausal.apply(q, k, v, scale)
