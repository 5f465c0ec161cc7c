"""Causal attention of one example as one compiled kernel: AVX-512 BF16, forward and backward.

:func:`adaptune.train.fast.blocked.causal_attention` computes causal attention in blocks of queries
with PyTorch's batched multiplies; between them, each block's scores, probabilities and
gradients go through memory as separate tensors (a softmax, a mask, casts, a dozen small
operations per block and layer). ``kernels/attention.c`` does the same sums in one call per
example: scores, softmax, the weighted sum, and in the backward pass the recomputed
probabilities and the query, key and value gradients, with each block's numbers kept in the
cache, the multiplies on the CPU's bf16 dot-product instruction (``vdpbf16ps``) and both cores
working on interleaved blocks. The numbers are the same as the blocked kernel's: scores, softmax
and sums in fp32, probabilities and their gradients rounded to bf16 for the multiplies.

The kernel is built on first use (:mod:`adaptune.train.fast.compiled`). :func:`available` says
whether it can run: a CPU with ``avx512_bf16``, a working ``gcc``, head dimension 64 (SmolLM2's
and most small Llama-style models'), and ``ADAPTUNE_NATIVE_KERNELS`` not set to ``0``. Where it
cannot, the blocked kernel runs: the same results, slower. ``bench/attention_kernel.py`` times
both; ``tests/test_train_native.py`` checks values and gradients against fp32 attention.
"""

from __future__ import annotations

import ctypes
from functools import cache
from typing import Any

import torch
from torch.autograd.function import once_differentiable

import adaptune.train.fast.compiled as compiled

HEAD_DIM = 64
BLOCK = 16
"""Query tokens per block (times the query heads per key head: the rows of one block)."""
_BF16, _I32 = torch.bfloat16, torch.int32


@cache
def _library() -> ctypes.CDLL | None:
    """The loaded kernel with its signatures, or ``None`` where it cannot run."""
    p, i, f, n = ctypes.c_void_p, ctypes.c_int, ctypes.c_float, ctypes.c_long
    viewed, rope = [p, i, n, n], [p, p, n]
    return compiled.bind("attention", {
        "adaptune_attention_forward": ([i, i, i, i, i, f, *viewed * 3, *rope, *[p] * 7], i),
        "adaptune_attention_backward": ([i, i, i, i, i, f, *viewed, *rope, *[p] * 9], i),
    })  # fmt: skip


def available(head_dim: int = HEAD_DIM) -> bool:
    """Whether :func:`causal_attention` can run here for heads of ``head_dim``."""
    return head_dim == HEAD_DIM and _library() is not None


def _view(x: torch.Tensor) -> tuple[int, int, int, int]:
    """``(pointer, is_bf16, head stride, token stride)`` of a ``(heads, L, 64)`` tensor whose
    rows are contiguous, fp32 or bf16 (the caller makes it so)."""
    return x.data_ptr(), int(x.dtype == _BF16), x.stride(0), x.stride(1)


def _readable(x: torch.Tensor) -> torch.Tensor:
    """``x`` as the kernel reads it: fp32 or bf16, each row of 64 contiguous."""
    if x.dtype not in (torch.float32, _BF16):
        x = x.float()
    return x if x.stride(-1) == 1 else x.contiguous()


def _rope(cos: torch.Tensor | None, sin: torch.Tensor | None) -> tuple[int, int, int]:
    """``(cos pointer, sin pointer, row stride)``, or zeros for no rotation."""
    if cos is None or sin is None:
        return 0, 0, 0
    return cos.data_ptr(), sin.data_ptr(), cos.stride(0)


class _NativeCausal(torch.autograd.Function):
    """``q (heads, L, 64)``, ``k, v (kv_heads, L, 64)`` → ``(L, heads, 64)`` bf16; with ``cos``
    and ``sin`` (``(L, 64)`` fp32, same strides) q and k are rotated first."""

    @staticmethod
    def forward(
        ctx: Any,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        scale: float,
        cos: torch.Tensor | None,
        sin: torch.Tensor | None,
    ) -> torch.Tensor:
        lib = _library()
        assert lib is not None
        ctx.dtypes = (q.dtype, k.dtype, v.dtype)
        kv, length, d = k.shape
        heads = q.shape[0]
        padded = (length + 31) // 32 * 32
        out = torch.empty(length, heads, d, dtype=_BF16)
        lse = torch.empty(kv, length * (heads // kv), dtype=torch.float32)
        qs = torch.empty(heads, length, d, dtype=_BF16)
        kt, vt = (torch.empty(kv, d // 2, padded, dtype=_I32) for _ in range(2))
        kp, vp = (torch.empty(kv, padded // 2, d, dtype=_I32) for _ in range(2))
        q, k, v = (_readable(x) for x in (q, k, v))  # kept alive across the call
        failed = lib.adaptune_attention_forward(
            kv, length, heads // kv, BLOCK, torch.get_num_threads(), scale,
            *_view(q), *_view(k), *_view(v), *_rope(cos, sin),
            *(t.data_ptr() for t in (out, lse, qs, kt, kp, vt, vp)),
        )  # fmt: skip
        if failed:
            raise MemoryError("native attention: no memory for its scratch (forward)")
        ctx.save_for_backward(qs, kt, kp, vt, lse)
        ctx.scale, ctx.rope = scale, (cos, sin)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        lib = _library()
        assert lib is not None
        qs, kt, kp, vt, lse = ctx.saved_tensors
        heads, length, d = qs.shape
        kv = kt.shape[0]
        dout = torch.empty(heads, length, d, dtype=_BF16)
        dq = torch.empty(heads, length, d, dtype=torch.float32)
        dk, dv = (torch.empty(kv, length, d, dtype=torch.float32) for _ in range(2))
        grad = _readable(grad)  # kept alive across the call
        failed = lib.adaptune_attention_backward(
            kv, length, heads // kv, BLOCK, torch.get_num_threads(), ctx.scale,
            *_view(grad.transpose(0, 1)), *_rope(*ctx.rope),
            *(t.data_ptr() for t in (qs, kt, kp, vt, lse, dout, dq, dk, dv)),
        )  # fmt: skip
        if failed:
            raise MemoryError("native attention: no memory for its scratch (backward)")
        q_dtype, k_dtype, v_dtype = ctx.dtypes
        return dq.to(q_dtype), dk.to(k_dtype), dv.to(v_dtype), None, None, None


def causal_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float | None = None,
    rope: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Causal attention of one example in bf16 with the compiled kernel: ``q (heads, L, 64)``,
    ``k, v (kv_heads, L, 64)`` → ``(L, heads, 64)`` bf16, differentiable; the same contract as
    :func:`adaptune.train.fast.blocked.causal_attention`. With ``rope=(cos, sin)`` (each
    ``(L, 64)``, as transformers' rotary embedding gives them per token) q and k are rotated
    inside first, ``x·cos + rotate_half(x)·sin`` as Llama does, and their gradients go back
    through the rotation: no rotated copies of q and k are made. Check :func:`available` first."""
    if q.dim() != 3 or k.shape != v.shape or q.shape[1:] != k.shape[1:]:
        raise ValueError(f"shapes q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if q.shape[0] % k.shape[0] or q.shape[-1] != HEAD_DIM:
        raise ValueError(
            f"native attention needs head_dim {HEAD_DIM} and grouped heads: {tuple(q.shape)}"
        )
    if q.device.type != "cpu":
        raise ValueError("native attention runs on the CPU only")
    cos = sin = None
    if rope is not None:
        cos, sin = (t.detach().float() for t in rope)
        if cos.shape != (q.shape[1], HEAD_DIM) or sin.shape != cos.shape:
            raise ValueError(f"rope cos/sin must be ({q.shape[1]}, {HEAD_DIM}): {tuple(cos.shape)}")
        if cos.stride(-1) != 1 or sin.stride() != cos.stride():
            cos, sin = cos.contiguous(), sin.contiguous()
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    return _NativeCausal.apply(q, k, v, scale, cos, sin)
