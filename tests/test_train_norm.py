"""The frozen RMSNorm (:mod:`adaptune.train.fast.norm`): the same values and input gradients as
transformers' own norm, less kept for the backward pass, swapped in only where it computes the
same thing and only for the length of the run, even across ``train()``/``eval()``."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from adaptune.train.fast.norm import frozen_norms
from tiny_model import tiny_model, tiny_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def norm_of(hidden: int = 24, eps: float = 1e-5) -> LlamaRMSNorm:
    norm = LlamaRMSNorm(hidden, eps=eps)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    return norm.requires_grad_(False).train()


def value_and_grad(norm: nn.Module, x: torch.Tensor, grad: torch.Tensor):
    x = x.detach().clone().requires_grad_()
    out = norm(x)
    out.backward(grad)
    return out.detach(), x.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_values_and_input_gradients_match_the_op_by_op_norm(dtype) -> None:
    norm = norm_of()
    g = torch.Generator().manual_seed(0)
    x = (3 * torch.randn(2, 7, 24, generator=g)).to(dtype)
    grad = torch.randn(2, 7, 24, generator=g)
    want = value_and_grad(norm, x, grad)
    with frozen_norms(norm) as swapped:
        got = value_and_grad(norm, x, grad)
    assert swapped == 1
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype
        assert torch.allclose(a.float(), b.float(), atol=tol, rtol=tol)


def test_it_keeps_the_input_and_one_number_per_token_for_the_backward_pass() -> None:
    def saved(norm: nn.Module) -> int:
        sizes: list[int] = []

        def keep(t):
            sizes.append(t.numel() * t.element_size() if t is not norm.weight else 0)
            return t

        x = torch.randn(4, 16, 24, requires_grad=True)
        with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
            norm(x).sum().backward()
        return sum(sizes)

    norm = norm_of()
    plain = saved(norm)
    with frozen_norms(norm):
        ours = saved(norm)
    assert ours == (4 * 16 * 24 + 4 * 16) * 4 < plain


def with_kernels(model):
    """``model`` as transformers loads a real one where the ``kernels`` package is installed
    (as it is with transformers 5 here): kernelized again on every train()/eval()."""
    if importlib.util.find_spec("kernels") is not None:
        model.set_use_kernels(True)
    return model


def test_swapped_for_the_run_only_and_through_mode_switches() -> None:
    tok = tiny_tokenizer()
    model = with_kernels(tiny_model(tok).requires_grad_(False))
    norms = [m for m in model.modules() if isinstance(m, LlamaRMSNorm)]
    with frozen_norms(model) as swapped:
        assert swapped == len(norms) > 0
        model.eval()
        model.train()  # kernelize resets instance forwards here: the swap must outlive it
        assert all(type(m).__name__ == "FrozenLlamaRMSNorm" for m in norms)
    assert all(type(m) is LlamaRMSNorm for m in norms)
    assert all("forward" not in vars(m) for m in norms)


def test_eval_and_no_grad_take_the_norms_own_path(monkeypatch) -> None:
    from adaptune.train.fast import norm as module

    calls = []
    real = module._FrozenRMSNorm.apply
    monkeypatch.setattr(module._FrozenRMSNorm, "apply", lambda *a: calls.append(1) or real(*a))
    norm = norm_of()
    x = torch.randn(3, 24)
    with frozen_norms(norm):
        with torch.no_grad():
            norm(x)
        norm.eval()
        norm(x)
        assert not calls
        norm.train()
        norm(x)
    assert calls == [1]


def test_trainable_or_different_norms_keep_their_own_forward() -> None:
    trainable = norm_of().requires_grad_(True)
    with frozen_norms(trainable) as swapped:
        assert swapped == 0

    class OnePlusRMSNorm(LlamaRMSNorm):  # Gemma-style: scales by 1 + weight
        def forward(self, hidden_states):
            return super().forward(hidden_states) / self.weight * (1 + self.weight)

    holder = nn.ModuleList([norm_of(), OnePlusRMSNorm(24).requires_grad_(False)])
    with frozen_norms(holder) as swapped:
        assert swapped == 1
        assert type(holder[1]) is OnePlusRMSNorm
    assert type(holder[0]) is LlamaRMSNorm
