"""One-pass element-wise kernels for the frozen norms and MLPs (``kernels/elementwise.c``).

Op by op, PyTorch goes through memory once per operation: an RMSNorm forward is five passes over
the ``(tokens, hidden)`` tensor (square, mean, reciprocal root, two multiplies) and its
closed-form backward six; the MLP's ``silu(gate) · up`` is two forward and about eight backward.
These do each in one pass, fp32 inside; under bf16 autocast the gated SiLU's gradients are
rounded once instead of after every operation (tokens/s with and without them:
``bench/results/hand_measurements.md``; ``bench/train_profile.py`` shows the element-wise rest of a
step).

Each function returns ``None`` where the compiled kernels cannot run
(:func:`adaptune.train.fast.compiled.load`) or the tensors are not what they take (dtype,
layout); the callers, :mod:`~adaptune.train.fast.norm` and :mod:`~adaptune.train.fast.mlp`, then
run their PyTorch path. ``tests/test_train_fused.py`` compares both paths.
"""

from __future__ import annotations

import ctypes
from functools import cache

import torch

import adaptune.train.fast.compiled as compiled

_FLOAT, _BF16 = torch.float32, torch.bfloat16


@cache
def _library() -> ctypes.CDLL | None:
    p, i, f, n = ctypes.c_void_p, ctypes.c_int, ctypes.c_float, ctypes.c_long
    return compiled.bind("elementwise", {
        "adaptune_rms_norm_forward": ([n, n, p, p, f, p, p, i], None),
        "adaptune_rms_norm_backward": ([n, n, p, p, p, p, p, i], None),
        "adaptune_gated_silu_forward": ([n, i, p, p, p, i], None),
        "adaptune_gated_silu_backward": ([n, i, p, p, p, p, p, i], None),
    })  # fmt: skip


def available() -> bool:
    """Whether the compiled element-wise kernels run here."""
    return _library() is not None


def _plain(*tensors: torch.Tensor, dtypes: tuple[torch.dtype, ...] = (_FLOAT,)) -> bool:
    """CPU, contiguous, one dtype of ``dtypes`` shared by all."""
    first = tensors[0].dtype
    return first in dtypes and all(
        t.device.type == "cpu" and t.is_contiguous() and t.dtype == first for t in tensors
    )


def rms_norm(
    x: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``weight · x / rms(x)`` and the reciprocal RMS per row (``(…, 1)``), fp32; or ``None``."""
    lib = _library()
    if lib is None or not _plain(x, weight) or weight.shape != x.shape[-1:]:
        return None
    width = x.shape[-1]
    rows = x.numel() // width
    out = torch.empty_like(x)
    rstd = torch.empty(*x.shape[:-1], 1, dtype=_FLOAT)
    lib.adaptune_rms_norm_forward(
        rows, width, x.data_ptr(), weight.data_ptr(), eps, out.data_ptr(), rstd.data_ptr(),
        torch.get_num_threads(),
    )  # fmt: skip
    return out, rstd


def rms_norm_backward(
    x: torch.Tensor, weight: torch.Tensor, rstd: torch.Tensor, grad: torch.Tensor
) -> torch.Tensor | None:
    """The input gradient of :func:`rms_norm` for a frozen weight, or ``None``."""
    lib = _library()
    if lib is None or not _plain(x, weight, rstd, grad) or grad.shape != x.shape:
        return None
    width = x.shape[-1]
    dx = torch.empty_like(x)
    lib.adaptune_rms_norm_backward(
        x.numel() // width, width, x.data_ptr(), weight.data_ptr(), rstd.data_ptr(),
        grad.data_ptr(), dx.data_ptr(), torch.get_num_threads(),
    )  # fmt: skip
    return dx


def gated_silu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor | None:
    """``silu(gate) · up`` (fp32 or bf16, computed in fp32), or ``None``."""
    lib = _library()
    if lib is None or not _plain(gate, up, dtypes=(_FLOAT, _BF16)) or gate.shape != up.shape:
        return None
    out = torch.empty_like(gate)
    lib.adaptune_gated_silu_forward(
        gate.numel(), int(gate.dtype == _BF16), gate.data_ptr(), up.data_ptr(), out.data_ptr(),
        torch.get_num_threads(),
    )  # fmt: skip
    return out


def gated_silu_backward(
    gate: torch.Tensor, up: torch.Tensor, grad: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The gradients of :func:`gated_silu` for ``gate`` and ``up``, or ``None``."""
    lib = _library()
    if lib is None or not _plain(gate, up, grad, dtypes=(_FLOAT, _BF16)):
        return None
    if not gate.shape == up.shape == grad.shape:
        return None
    grad_gate, grad_up = torch.empty_like(gate), torch.empty_like(up)
    lib.adaptune_gated_silu_backward(
        gate.numel(), int(gate.dtype == _BF16), gate.data_ptr(), up.data_ptr(), grad.data_ptr(),
        grad_gate.data_ptr(), grad_up.data_ptr(), torch.get_num_threads(),
    )  # fmt: skip
    return grad_gate, grad_up
