"""Causal attention of one example as one compiled kernel: AVX-512 BF16, forward and backward.

:func:`adaptune.train.blocked.causal_attention` computes causal attention in blocks of queries
with PyTorch's batched multiplies; between them, each block's scores, probabilities and
gradients go through memory as separate tensors (a softmax, a mask, casts, a dozen small
operations per block and layer). ``kernels/attention.c`` does the same sums in one call per
example: scores, softmax, the weighted sum, and in the backward pass the recomputed
probabilities and the query, key and value gradients, with each block's numbers kept in the
cache, the multiplies on the CPU's bf16 dot-product instruction (``vdpbf16ps``) and both cores
working on interleaved blocks. The numbers are the same as the blocked kernel's: scores, softmax
and sums in fp32, probabilities and their gradients rounded to bf16 for the multiplies.

The kernel is built with the machine's ``gcc`` on first use (a second or two; no PyTorch
headers, loaded through :mod:`ctypes`) into ``$XDG_CACHE_HOME/adaptune/kernels`` (default
``~/.cache``), named by a hash of its source and flags, so a rebuild happens only when the source
changes. :func:`available` says whether it can run: a CPU with ``avx512_bf16``, a working
``gcc``, head dimension 64 (SmolLM2's and most small Llama-style models'), and
``ADAPTUNE_NATIVE_ATTENTION`` not set to ``0``. Where it cannot, the blocked kernel runs: the
same results, slower. ``bench/attention_kernel.py`` times both; ``tests/test_train_native.py``
checks values and gradients against fp32 attention.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch.autograd.function import once_differentiable

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("kernels") / "attention.c"
FLAGS = (
    "-O3", "-shared", "-fPIC", "-fopenmp", "-std=gnu11",
    "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512bf16", "-mfma",
)  # fmt: skip
HEAD_DIM = 64
BLOCK = 16
"""Query tokens per block (times the query heads per key head: the rows of one block)."""
_BF16, _I32 = torch.bfloat16, torch.int32


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "adaptune" / "kernels"


def _cpu_has_bf16() -> bool:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = (line.split() for line in text.splitlines() if line.startswith("flags"))
    return any("avx512_bf16" in words for words in flags)


def build(directory: Path | None = None) -> Path:
    """Compile ``kernels/attention.c`` (once per source and flags) and return the library's path;
    raises :class:`RuntimeError` with the compiler's message when it fails."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise RuntimeError("no C compiler (gcc or cc) on PATH")
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source + " ".join(FLAGS).encode()).hexdigest()[:16]
    directory = directory or _cache_dir()
    target = directory / f"attention-{digest}.so"
    if target.exists():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        partial = Path(tmp) / target.name
        done = subprocess.run(
            [compiler, *FLAGS, str(SOURCE), "-o", str(partial), "-lm"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"{compiler} failed on {SOURCE.name}: {done.stderr.strip()[-2000:]}")
        os.replace(partial, target)
    return target


@cache
def _library() -> ctypes.CDLL | None:
    """The loaded kernel, or ``None`` (with the reason logged once) where it cannot run."""
    if os.environ.get("ADAPTUNE_NATIVE_ATTENTION", "1") == "0":
        return None
    if not _cpu_has_bf16():
        log.info("native attention off: this CPU has no avx512_bf16")
        return None
    try:
        lib = ctypes.CDLL(str(build()))
    except (RuntimeError, OSError) as err:
        log.warning("native attention off: %s", err)
        return None
    p, i, f, n = ctypes.c_void_p, ctypes.c_int, ctypes.c_float, ctypes.c_long
    viewed = [p, i, n, n]
    lib.adaptune_attention_forward.argtypes = [i, i, i, i, i, f, *viewed * 3, *[p] * 7]
    lib.adaptune_attention_backward.argtypes = [i, i, i, i, i, f, *viewed, *[p] * 9]
    lib.adaptune_attention_forward.restype = lib.adaptune_attention_backward.restype = i
    return lib


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


class _NativeCausal(torch.autograd.Function):
    """``q (heads, L, 64)``, ``k, v (kv_heads, L, 64)`` → ``(L, heads, 64)`` bf16."""

    @staticmethod
    def forward(
        ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float
    ) -> torch.Tensor:
        lib = _library()
        assert lib is not None
        kv, length, d = k.shape
        heads = q.shape[0]
        padded = (length + 31) // 32 * 32
        out = torch.empty(length, heads, d, dtype=_BF16)
        lse = torch.empty(kv, length * (heads // kv), dtype=torch.float32)
        qs = torch.empty(heads, length, d, dtype=_BF16)
        kt, vt = (torch.empty(kv, d // 2, padded, dtype=_I32) for _ in range(2))
        kp, vp = (torch.empty(kv, padded // 2, d, dtype=_I32) for _ in range(2))
        failed = lib.adaptune_attention_forward(
            kv, length, heads // kv, BLOCK, torch.get_num_threads(), scale,
            *_view(_readable(q)), *_view(_readable(k)), *_view(_readable(v)),
            *(t.data_ptr() for t in (out, lse, qs, kt, kp, vt, vp)),
        )  # fmt: skip
        if failed:
            raise MemoryError("native attention: no memory for its scratch (forward)")
        ctx.save_for_backward(qs, kt, kp, vt, lse)
        ctx.scale, ctx.dtypes = scale, (q.dtype, k.dtype, v.dtype)
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
        failed = lib.adaptune_attention_backward(
            kv, length, heads // kv, BLOCK, torch.get_num_threads(), ctx.scale,
            *_view(_readable(grad).transpose(0, 1)),
            *(t.data_ptr() for t in (qs, kt, kp, vt, lse, dout, dq, dk, dv)),
        )  # fmt: skip
        if failed:
            raise MemoryError("native attention: no memory for its scratch (backward)")
        q_dtype, k_dtype, v_dtype = ctx.dtypes
        return dq.to(q_dtype), dk.to(k_dtype), dv.to(v_dtype), None


def causal_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None
) -> torch.Tensor:
    """Causal attention of one example in bf16 with the compiled kernel: ``q (heads, L, 64)``,
    ``k, v (kv_heads, L, 64)`` → ``(L, heads, 64)`` bf16, differentiable; the same contract as
    :func:`adaptune.train.blocked.causal_attention`. Check :func:`available` first."""
    if q.dim() != 3 or k.shape != v.shape or q.shape[1:] != k.shape[1:]:
        raise ValueError(f"shapes q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if q.shape[0] % k.shape[0] or q.shape[-1] != HEAD_DIM:
        raise ValueError(
            f"native attention needs head_dim {HEAD_DIM} and grouped heads: {tuple(q.shape)}"
        )
    if q.device.type != "cpu":
        raise ValueError("native attention runs on the CPU only")
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    return _NativeCausal.apply(q, k, v, scale)
