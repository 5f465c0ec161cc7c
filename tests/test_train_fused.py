"""The compiled element-wise kernels (adaptune.train.fast.fused): RMSNorm forward and backward and
the MLP's gated SiLU agree with PyTorch; tensors they do not take get ``None`` (the PyTorch path);
the norm and the MLP take them when they run and give the same results when switched off."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from adaptune.train.fast import compiled, fused, mlp, norm

NEEDS = pytest.mark.skipif(
    not fused.available(),
    reason="compiled kernels cannot run here: they need a CPU with avx512_bf16 and gcc "
    "(the PyTorch paths run instead)",
)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).norm() / b.norm())


@NEEDS
@pytest.mark.parametrize("shape", [(2, 64, 576), (3, 7, 40), (1, 5, 17)])
def test_rms_norm_and_its_gradient_match_pytorch(shape) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g) * 3
    weight, grad = torch.randn(shape[-1], generator=g), torch.randn(shape, generator=g)
    out, rstd = fused.rms_norm(x, weight, 1e-5)
    want_out, want_rstd = norm._rms_norm(x, weight, 1e-5)
    assert out.shape == x.shape and rstd.shape == (*shape[:-1], 1)
    assert relative(out, want_out) < 1e-6 and relative(rstd, want_rstd) < 1e-6
    leaf = x.clone().requires_grad_()
    norm._rms_norm(leaf, weight, 1e-5)[0].backward(grad)
    assert relative(fused.rms_norm_backward(x, weight, rstd, grad), leaf.grad) < 1e-6


@NEEDS
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(4, 1536), (3, 37)])
def test_gated_silu_and_its_gradients_match_fp32(dtype, shape) -> None:
    g = torch.Generator().manual_seed(1)
    gate = (torch.randn(shape, generator=g) * 4).to(dtype)
    up, grad = torch.randn(shape, generator=g).to(dtype), torch.randn(shape, generator=g).to(dtype)
    a, b = gate.float().requires_grad_(), up.float().requires_grad_()
    want = F.silu(a) * b
    want.backward(grad.float())
    out = fused.gated_silu(gate, up)
    grad_gate, grad_up = fused.gated_silu_backward(gate, up, grad)
    assert out.dtype == grad_gate.dtype == grad_up.dtype == dtype
    tol = 1e-6 if dtype == torch.float32 else 4e-3  # bf16: one rounding of the result
    assert relative(out, want) < tol
    assert relative(grad_gate, a.grad) < tol and relative(grad_up, b.grad) < tol


@NEEDS
def test_tensors_they_do_not_take_get_none() -> None:
    x = torch.randn(4, 8)
    assert fused.rms_norm(x.t(), torch.ones(4), 1e-5) is None  # not contiguous
    assert fused.rms_norm(x.half(), torch.ones(8).half(), 1e-5) is None  # fp16
    assert fused.rms_norm(x, torch.ones(7), 1e-5) is None  # weight of another width
    assert fused.gated_silu(x, x.to(torch.bfloat16)) is None  # mixed dtypes
    assert fused.gated_silu_backward(x, x, torch.randn(4, 9)) is None  # shapes differ


def test_switched_off_the_callers_take_their_pytorch_paths(monkeypatch) -> None:
    compiled.load.cache_clear()
    fused._library.cache_clear()
    try:
        monkeypatch.setenv(compiled.SWITCH, "0")
        assert not fused.available()
        x = torch.randn(3, 8)
        assert fused.rms_norm(x, torch.ones(8), 1e-5) is None
        assert fused.gated_silu(x, x) is None
    finally:
        compiled.load.cache_clear()
        fused._library.cache_clear()


def _norm_and_mlp_grads() -> tuple[torch.Tensor, ...]:
    """Output and input gradients of a frozen norm then a frozen gated MLP, via their
    training paths."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 9, 64, generator=g).requires_grad_()
    w_norm = torch.rand(64, generator=g) + 0.5
    weights = [torch.randn(s, generator=g) * 0.1 for s in ((96, 64), (96, 64), (64, 96))]
    h = norm._FrozenRMSNorm.apply(x, w_norm, 1e-6)
    out = mlp._FrozenGatedMLP.apply(h, *weights)
    (grad,) = torch.autograd.grad(out, x, torch.randn(out.shape, generator=g))
    return out.detach(), grad


@NEEDS
def test_norm_and_mlp_give_the_same_with_and_without_the_kernels(monkeypatch) -> None:
    calls = []
    for name in ("rms_norm", "rms_norm_backward", "gated_silu", "gated_silu_backward"):
        real = getattr(fused, name)
        monkeypatch.setattr(fused, name, lambda *a, _r=real, _n=name: calls.append(_n) or _r(*a))
    with_kernels = _norm_and_mlp_grads()
    assert sorted(set(calls)) == [
        "gated_silu",
        "gated_silu_backward",
        "rms_norm",
        "rms_norm_backward",
    ]
    monkeypatch.setattr(fused, "_library", lambda: None)
    without = _norm_and_mlp_grads()
    for a, b in zip(with_kernels, without, strict=True):
        assert relative(a, b) < 1e-5
