"""The compiled bf16 attention kernel (adaptune.train.fast.native): values and gradients against
fp32 attention across block edges and head groupings, causality, thread counts, packed rows
taking it, and the ways it stays off (no avx512_bf16, another head size, the switch, a compiler
error)."""

from __future__ import annotations

import pytest
import torch

from adaptune.train.fast import attention as attention_module
from adaptune.train.fast import compiled, native
from adaptune.train.fast.attention import packed_attention
from attention_helpers import errors_against_reference, reference, relative

NEEDS = pytest.mark.skipif(
    not native.available(),
    reason="native attention cannot run here: it needs a CPU with avx512_bf16 and gcc "
    "(the blocked kernel runs instead)",
)


def inputs(heads: int, kv: int, length: int, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)

    def leaf(n: int, std: float) -> torch.Tensor:
        return (torch.randn(n, length, 64, generator=g) * std).to(dtype).requires_grad_()

    grad = torch.randn(length, heads, 64, generator=g)
    return leaf(heads, 2.0), leaf(kv, 2.0), leaf(kv, 1.0), grad


@NEEDS
@pytest.mark.parametrize(
    ("heads", "kv", "length"),
    [
        (9, 3, 1),  # one token
        (9, 3, 16),  # exactly one block of queries
        (9, 3, 17),  # a second block of one token
        (9, 3, 33),  # keys past one 32-column tile
        (9, 3, 300),  # SmolLM2's heads, many blocks
        (4, 2, 45),  # two query heads per key head
        (3, 3, 70),  # no grouping
        (8, 1, 23),  # all heads share one key head
    ],
)
def test_values_and_gradients_match_fp32_attention(heads, kv, length) -> None:
    out, grads = errors_against_reference(native.causal_attention, *inputs(heads, kv, length))
    # bf16 inputs and probabilities: under 1 % relative error; a masking, grouping or layout
    # mistake gives tens of percent
    assert out < 0.01 and max(grads) < 0.015


@NEEDS
def test_bf16_inputs_get_bf16_gradients_and_a_scale_is_honoured() -> None:
    q, k, v, grad = inputs(9, 3, 40, dtype=torch.bfloat16)
    out, grads = errors_against_reference(native.causal_attention, q, k, v, grad, scale=0.3)
    assert out < 0.01 and max(grads) < 0.02


@NEEDS
def test_a_query_never_sees_a_later_key() -> None:
    q, k, v, _ = inputs(9, 3, 50)
    first = native.causal_attention(q, k, v)
    k2, v2 = k.detach().clone(), v.detach().clone()
    k2[:, 37:] += 5.0
    v2[:, 37:] -= 7.0
    second = native.causal_attention(q, k2, v2)
    assert torch.equal(first[:37], second[:37])
    assert not torch.equal(first[37:], second[37:])


@NEEDS
def test_one_thread_and_two_threads_agree() -> None:
    q, k, v, grad = inputs(9, 3, 130, seed=3)
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            out = native.causal_attention(q, k, v)
            results.append((out, *torch.autograd.grad(out, (q, k, v), grad)))
    finally:
        torch.set_num_threads(threads)
    # each output row is one thread's work: identical; key and value gradients are summed over
    # the threads' shares, in another order
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
    for a, b in zip(results[0][2:], results[1][2:], strict=True):
        assert relative(a, b) < 1e-5


@NEEDS
def test_packed_rows_take_the_native_kernel_under_bf16_autocast(monkeypatch) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=100, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, attn_implementation="sdpa",
    )  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    calls = []
    real = native.causal_attention

    def spy(q, k, v, scale=None):
        calls.append(q.shape[1])
        return real(q, k, v, scale)

    monkeypatch.setattr(native, "causal_attention", spy)
    ids = torch.randint(5, 100, (1, 30))
    positions = torch.cat([torch.arange(12), torch.arange(18)])[None]
    with packed_attention(model), torch.autocast("cpu", dtype=torch.bfloat16):
        packed = model(input_ids=ids, position_ids=positions).logits
    assert calls and set(calls) == {12, 18}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        alone = model(input_ids=ids[:, 12:], position_ids=positions[:, 12:]).logits
    # the second example packed after the first gives what it gives alone (bf16 tolerance)
    assert relative(packed[:, 12:], alone) < 0.02


def test_shapes_and_head_size_are_checked() -> None:
    q, k, v, _ = inputs(9, 3, 5)
    with pytest.raises(ValueError, match="shapes"):
        native.causal_attention(q, k[:, :4], v)
    with pytest.raises(ValueError, match="head_dim 64"):
        native.causal_attention(q[..., :32], k[..., :32], v[..., :32])
    assert not native.available(head_dim=16)


def test_the_switch_and_a_cpu_without_bf16_turn_it_off(monkeypatch) -> None:
    def fresh() -> None:
        compiled.load.cache_clear()
        native._library.cache_clear()

    fresh()
    try:
        monkeypatch.setenv(compiled.SWITCH, "0")
        assert not native.available()
        fresh()
        monkeypatch.delenv(compiled.SWITCH)
        monkeypatch.setattr(compiled, "cpu_has_bf16", lambda: False)
        assert not native.available()
    finally:
        fresh()


def test_a_compiler_error_is_reported_and_nothing_is_left_behind(tmp_path) -> None:
    bad = tmp_path / "attention.c"
    bad.write_text("int broken( {\n")
    with pytest.raises(RuntimeError, match=r"failed on attention\.c"):
        compiled.build(bad, tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*.so"))


def test_a_build_is_reused_until_the_source_changes(tmp_path) -> None:
    if compiled.shutil.which("gcc") is None and compiled.shutil.which("cc") is None:
        pytest.skip("no C compiler on this machine")
    source = tmp_path / "attention.c"
    source.write_text("int adaptune_attention_forward(void) { return 0; }\n")
    try:
        first = compiled.build(source, tmp_path / "cache")
    except RuntimeError as err:  # a compiler without the AVX-512 BF16 flags
        pytest.skip(f"the compiler cannot build with the kernels' flags here: {err}")
    stamp = first.stat().st_mtime_ns
    assert compiled.build(source, tmp_path / "cache") == first
    assert first.stat().st_mtime_ns == stamp
    source.write_text("int adaptune_attention_forward(void) { return 1; }\n")
    second = compiled.build(source, tmp_path / "cache")
    assert second != first and second.exists()


def test_the_packed_path_falls_back_to_the_blocked_kernel_when_off(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(native, "available", lambda head_dim=64: False)
    real = attention_module.causal_attention

    def spy(q, k, v, scale=None):
        calls.append(q.shape[1])
        return real(q, k, v, scale)

    monkeypatch.setattr(attention_module, "causal_attention", spy)
    q, k, v, _ = inputs(4, 2, 10)
    positions = torch.cat([torch.arange(4), torch.arange(6)])[None]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = attention_module.packed_attention_forward(
            None, q[None], k[None], v[None], None, position_ids=positions
        )
    assert calls == [4, 6] and out.shape == (1, 10, 4, 64)


def rotated(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Llama's rotary embedding of ``x (heads, L, 64)`` in fp32."""
    half = x.shape[-1] // 2
    turned = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos + turned * sin


def angles(length: int, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    inv = 1.0 / (10000 ** (torch.arange(0, 64, 2).float() / 64))
    theta = (torch.arange(length).float() + offset)[:, None] * inv
    theta = torch.cat([theta, theta], -1)
    return theta.cos(), theta.sin()


@NEEDS
@pytest.mark.parametrize(("heads", "kv", "length"), [(9, 3, 1), (9, 3, 40), (4, 2, 130)])
def test_rotation_inside_equals_rotating_first(heads, kv, length) -> None:
    q, k, v, grad = inputs(heads, kv, length, seed=5)
    cos, sin = angles(length, offset=3)  # any angles: not only positions from 0

    def rotated_reference(q, k, v, scale):
        return reference(rotated(q, cos, sin), rotated(k, cos, sin), v, scale)

    def inside(q, k, v, scale):
        return native.causal_attention(q, k, v, scale, rope=(cos, sin))

    want = rotated_reference(q, k, v, None)
    want_grads = torch.autograd.grad(want, (q, k, v), grad)
    got = inside(q, k, v, None)
    got_grads = torch.autograd.grad(got, (q, k, v), grad)
    assert relative(got, want) < 0.01
    for g, w in zip(got_grads, want_grads, strict=True):
        assert relative(g, w) < 0.015


@NEEDS
def test_rotation_tables_of_the_wrong_shape_are_refused() -> None:
    q, k, v, _ = inputs(9, 3, 10)
    cos, sin = angles(9)
    with pytest.raises(ValueError, match="rope cos/sin"):
        native.causal_attention(q, k, v, rope=(cos, sin))


@NEEDS
def test_inputs_it_must_convert_first_stay_alive_through_the_call() -> None:
    # fp16 rows and rows whose last dimension is strided are copied to fp32 / made contiguous
    # before the kernel reads them: those copies must outlive the call (they once did not)
    q, k, v, grad = inputs(9, 3, 70, seed=7)
    half = [x.detach().half().requires_grad_() for x in (q, k, v)]
    out, grads = errors_against_reference(native.causal_attention, *half, grad)
    assert out < 0.01 and max(grads) < 0.015
    strided = [x.detach().repeat_interleave(2, -1)[..., ::2].requires_grad_() for x in (q, k, v)]
    assert strided[0].stride(-1) == 2
    out, grads = errors_against_reference(native.causal_attention, *strided, grad)
    assert out < 0.01 and max(grads) < 0.015
