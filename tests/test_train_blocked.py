"""The blocked bf16 causal attention (adaptune.train.fast.blocked) computes causal attention: values
and gradients against fp32 SDPA, across block edges and grouped-query shapes; packed rows take it
under bf16 autocast on the CPU and keep their examples apart; fp32 keeps the flash kernel."""

from __future__ import annotations

import pytest
import torch

from adaptune.train.fast import attention as attention_module
from adaptune.train.fast import blocked
from adaptune.train.fast.attention import packed_attention
from adaptune.train.fast.blocked import causal_attention
from attention_helpers import errors_against_reference, reference, relative
from tiny_model import tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def inputs(heads: int, kv: int, length: int, d: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q = (torch.randn(heads, length, d, generator=g) * 2).requires_grad_()
    k = (torch.randn(kv, length, d, generator=g) * 2).requires_grad_()
    v = torch.randn(kv, length, d, generator=g).requires_grad_()
    return q, k, v, torch.randn(length, heads, d, generator=g)


@pytest.mark.parametrize(
    ("heads", "kv", "length", "block"),
    [
        (4, 2, 1, 8),  # one token
        (4, 2, 8, 8),  # exactly one block
        (4, 2, 21, 8),  # several blocks, a short last one
        (6, 2, 40, 8),  # three query heads per key head
        (3, 3, 17, 8),  # no grouping
        (9, 3, 300, 128),  # SmolLM2's heads, the default block
    ],
)
def test_values_and_gradients_match_fp32_attention(monkeypatch, heads, kv, length, block) -> None:
    monkeypatch.setattr(blocked, "BLOCK", block)
    out, grads = errors_against_reference(causal_attention, *inputs(heads, kv, length))
    # bf16 rounds to 3 significant digits: about 0.5 % relative error; a masking or grouping
    # mistake gives tens of percent
    assert out < 0.02 and max(grads) < 0.03


def test_a_query_never_sees_a_later_key(monkeypatch) -> None:
    monkeypatch.setattr(blocked, "BLOCK", 4)
    q, k, v, _ = inputs(2, 1, 13)
    first = causal_attention(q, k, v)
    k2, v2 = k.detach().clone(), v.detach().clone()
    k2[:, 9:] += 5.0
    v2[:, 9:] -= 7.0
    second = causal_attention(q, k2, v2)
    assert torch.equal(first[:9], second[:9])
    assert not torch.equal(first[9:], second[9:])


def test_the_scale_is_used_and_results_repeat_bit_for_bit() -> None:
    q, k, v, grad = inputs(4, 2, 30)
    want = reference(q, k, v, scale=0.3)
    got = causal_attention(q, k, v, scale=0.3)
    assert relative(got, want) < 0.02
    again = causal_attention(q, k, v, scale=0.3)
    assert torch.equal(got, again)
    dq, dq_again = (torch.autograd.grad(out, q, grad)[0] for out in (got, again))
    assert torch.equal(dq, dq_again)


@pytest.mark.parametrize(
    ("q", "k", "v", "message"),
    [
        ((4, 5, 8), (2, 5, 8), (2, 6, 8), "shapes"),
        ((4, 5, 8), (3, 5, 8), (3, 5, 8), "evenly"),
        ((4, 5, 8), (2, 5, 4), (2, 5, 4), "shapes"),
    ],
)
def test_mismatched_shapes_get_a_clear_error(q, k, v, message) -> None:
    with pytest.raises(ValueError, match=message):
        causal_attention(torch.zeros(q), torch.zeros(k), torch.zeros(v))


def packed_logits(model, ids, positions):
    with packed_attention(model), torch.autocast("cpu", dtype=torch.bfloat16):
        return model(input_ids=ids, position_ids=positions, use_cache=False).logits.float()


def test_packed_rows_take_it_under_bf16_autocast_and_keep_apart(tok, monkeypatch) -> None:
    calls: list[int] = []
    real = attention_module.causal_attention

    def counting(q, k, v, scale=None):
        calls.append(q.shape[1])
        return real(q, k, v, scale)

    monkeypatch.setattr(attention_module, "causal_attention", counting)
    model = tiny_model(tok)
    first, second = torch.arange(3, 40), torch.arange(50, 71)
    ids = torch.cat([first, second])[None]
    positions = torch.cat([torch.arange(37), torch.arange(21)])[None]
    together = packed_logits(model, ids, positions)
    assert calls == [37, 21] * model.config.num_hidden_layers
    alone = packed_logits(model, second[None], torch.arange(21)[None])
    assert torch.allclose(together[0, 37:], alone[0], atol=3e-2, rtol=3e-2)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # transformers' sdpa, block mask
        plain = model(input_ids=ids, position_ids=positions, use_cache=False).logits.float()
    assert relative(together, plain) < 0.02


def test_fp32_keeps_the_flash_kernel(tok, monkeypatch) -> None:
    monkeypatch.setattr(
        attention_module, "causal_attention", lambda *a, **k: pytest.fail("blocked in fp32")
    )
    model = tiny_model(tok)
    ids, positions = torch.arange(3, 20)[None], torch.arange(17)[None]
    with packed_attention(model):
        model(input_ids=ids, position_ids=positions, use_cache=False)
