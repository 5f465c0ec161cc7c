"""What the attention-kernel tests compare against: fp32 causal SDPA, and a relative error."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def reference(q, k, v, scale=None):
    """fp32 causal SDPA with repeated key heads, as ``(L, heads, d)``."""
    groups = q.shape[0] // k.shape[0]
    k, v = k.repeat_interleave(groups, 0), v.repeat_interleave(groups, 0)
    out = F.scaled_dot_product_attention(q[None], k[None], v[None], is_causal=True, scale=scale)
    return out[0].transpose(0, 1)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """``|a - b| / |b|``, with ``|b|`` at least 1e-3 (one token's query gradient is 0)."""
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).norm() / b.norm().clamp_min(1e-3))


def errors_against_reference(kernel, q, k, v, grad, scale=None) -> tuple[float, list[float]]:
    """``kernel(q, k, v, scale)``'s relative error against :func:`reference` in its output
    (checked to be bf16 ``(L, heads, d)``) and in each input gradient (checked for dtype and
    shape against the input's)."""
    want = reference(q.float(), k.float(), v.float(), scale)
    want_grads = torch.autograd.grad(want, (q, k, v), grad)
    got = kernel(q, k, v, scale)
    got_grads = torch.autograd.grad(got, (q, k, v), grad)
    assert got.dtype == torch.bfloat16 and got.shape == (q.shape[1], q.shape[0], q.shape[2])
    for g, x in zip(got_grads, (q, k, v), strict=True):
        assert g.dtype == x.dtype and g.shape == x.shape
    return relative(got, want), [relative(g, w) for g, w in zip(got_grads, want_grads, strict=True)]
