"""Attention layers that leave the rotary embedding to the compiled kernel in training
(adaptune.train.fast.rope_attention): the same loss and LoRA gradients as the layer's own forward,
taken only in bf16 packed training, undone on exit, kept through train()/eval(), and refused
for a layer class that computes something else."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.models.llama.modeling_llama import LlamaAttention

from adaptune.train.fast import native, rope_attention
from adaptune.train.fast.attention import packed_attention
from adaptune.train.fast.rope_attention import rope_in_kernel
from adaptune.train.lora import attach
from attention_helpers import relative

pytestmark = pytest.mark.skipif(
    not native.available(),
    reason="the compiled attention kernel cannot run here (needs avx512_bf16 and gcc)",
)


def lora_model(seed: int = 0):
    """A 2-layer Llama with 64-wide heads (3 query heads, 1 key head) and a LoRA adapter whose
    B is non-zero, so that every LoRA weight gets a gradient."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=120, hidden_size=192, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=3, num_key_value_heads=1, attn_implementation="sdpa",
    )  # fmt: skip
    model = attach(LlamaForCausalLM(config), dropout=0.0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    return model.train()


IDS = torch.randint(0, 120, (2, 40), generator=torch.Generator().manual_seed(0))
POSITIONS = torch.cat([torch.arange(15), torch.arange(25)])[None].expand(2, -1)


def loss_and_grads(model, swap: bool, **kwargs):
    model.zero_grad()
    lm = model.get_base_model()
    with packed_attention(lm), rope_in_kernel(model) if swap else packed_attention(lm):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(input_ids=IDS, position_ids=POSITIONS, use_cache=False, **kwargs)
        loss = logits.logits.float().pow(2).mean()
        loss.backward()
    return float(loss.detach()), [p.grad.clone() for p in model.parameters() if p.requires_grad]


def count_rotations(monkeypatch) -> list[bool]:
    calls: list[bool] = []
    real = native.causal_attention

    def spy(*args, rope=None, **kwargs):
        calls.append(rope is not None)
        return real(*args, rope=rope, **kwargs)

    monkeypatch.setattr(native, "causal_attention", spy)
    return calls


def test_same_loss_and_gradients_as_the_layers_own_forward(monkeypatch) -> None:
    model = lora_model()
    plain = loss_and_grads(model, swap=False)
    calls = count_rotations(monkeypatch)
    fused = loss_and_grads(model, swap=True)
    # 2 layers × 2 rows × 2 examples took the rotation inside (after the check's calls)
    assert calls[-8:] == [True] * 8
    assert fused[0] == pytest.approx(plain[0], rel=1e-3)
    assert len(fused[1]) == len(plain[1]) == 16
    for a, b in zip(fused[1], plain[1], strict=True):
        assert relative(a, b) < 0.02  # bf16 rounding, once here and op by op there


def test_evaluation_and_fp32_take_the_layers_own_forward(monkeypatch) -> None:
    model = lora_model()
    calls = count_rotations(monkeypatch)
    with packed_attention(model.get_base_model()), rope_in_kernel(model) as swapped:
        assert swapped == 2
        checks = len(calls)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            model(input_ids=IDS, position_ids=POSITIONS, use_cache=False)  # no gradients
        model.eval()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(input_ids=IDS, position_ids=POSITIONS, use_cache=False)  # evaluation
        model.train()
        model(input_ids=IDS, position_ids=POSITIONS, use_cache=False)  # fp32: no autocast
    assert not any(calls[checks:])


def test_the_swap_is_undone_on_exit_and_outlives_mode_switches(monkeypatch) -> None:
    model = lora_model()
    if importlib.util.find_spec("kernels") is not None:
        model.get_base_model().set_use_kernels(True)  # as transformers loads the real model
    layers = [m for m in model.modules() if isinstance(m, LlamaAttention)]
    with packed_attention(model.get_base_model()), rope_in_kernel(model) as swapped:
        model.eval()
        model.train()
        assert swapped == 2 and all(type(m) is not LlamaAttention for m in layers)
        calls = count_rotations(monkeypatch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(input_ids=IDS, position_ids=POSITIONS, use_cache=False).logits.sum().backward()
        assert calls and all(calls)
    assert all(type(m) is LlamaAttention for m in layers)


class ScaledAttention(LlamaAttention):
    """An attention layer whose maths differs (its output doubled): must keep its own."""

    def forward(self, *args, **kwargs):
        out, weights = super().forward(*args, **kwargs)
        return out * 2, weights


def test_a_layer_class_that_computes_something_else_keeps_its_own() -> None:
    model = lora_model()
    first = model.get_base_model().model.layers[0]
    first.self_attn.__class__ = ScaledAttention
    with packed_attention(model.get_base_model()), rope_in_kernel(model) as swapped:
        assert swapped == 1  # the other layer only
        assert type(first.self_attn) is ScaledAttention
        assert not rope_attention._same(first.self_attn)
    # outside the packed attention the layer's own forward attends across the examples: the
    # check fails, so entered in the wrong order nothing is swapped
    assert not rope_attention._same(model.get_base_model().model.layers[1].self_attn)
