"""The trainer's fast paths compute what the plain model computes: per-example attention over
packed rows, the chunked head loss with its gradient made in the forward pass, the frozen gated
MLP that keeps two activations, the frozen RMSNorm that keeps its input only, and forward passes
cut to a token budget."""

from __future__ import annotations

import importlib.util
from contextlib import nullcontext

import pytest
import torch
from torch import nn

from adaptune.train import loss as loss_module
from adaptune.train.fast.attention import NAME, packed_attention, segments
from adaptune.train.fast.mlp import frozen_mlps
from adaptune.train.fast.norm import frozen_norms
from adaptune.train.format import encode_example
from adaptune.train.loop import forward_groups
from adaptune.train.lora import attach
from adaptune.train.loss import AnswerLoss, head_nll
from adaptune.train.packing import Row, collate, pack
from tiny_model import example, tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def batch(tok):
    bodies = ["short", "a much longer body " * 6, "medium sized body here " * 2]
    encoded = [encode_example(tok, example(i, body=bodies[i % 3]), 512) for i in range(7)]
    rows = sorted(pack(encoded, 400), key=lambda r: -r.examples)[:2]
    assert rows[0].examples >= 2 and len(rows[0]) != len(rows[1])  # packed, and padding
    return collate(rows, tok.pad_token_id)


def lora_model(tok, seed: int = 0, target: str = "attention"):
    """A tiny model with a LoRA adapter whose B is non-zero, so every LoRA weight gets a grad."""
    model = attach(tiny_model(tok, seed), dropout=0.0, target=target)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    return model.train()


def loss_and_grads(model, batch, **paths) -> tuple[float, list[torch.Tensor]]:
    model.zero_grad()
    lm = model.get_base_model()
    with (
        packed_attention(lm) if paths.get("attention") else nullcontext(),
        frozen_mlps(model) if paths.get("mlp") else nullcontext(),
        frozen_norms(model) if paths.get("norm") else nullcontext(),
    ):
        nll, _ = AnswerLoss(model, head_only=paths.get("head_only", True))(
            batch["input_ids"], batch["position_ids"], batch["labels"]
        )
        nll.backward()
    grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    return float(nll.detach()), grads


def assert_same(a, b, tol: float = 1e-4) -> None:
    assert a[0] == pytest.approx(b[0], rel=1e-5)
    assert len(a[1]) == len(b[1]) > 0
    for x, y in zip(a[1], b[1], strict=True):
        assert torch.allclose(x, y, atol=tol * float(x.abs().max()), rtol=tol)


@pytest.mark.parametrize(
    ("positions", "want"),
    [
        ([[0, 1, 2, 0, 1]], [[3, 2]]),
        ([[0, 1, 2, 3]], [[4]]),
        ([[0, 1, 0, 1], [0, 0, 0, 1]], [[2, 2], [1, 1, 2]]),
        ([[1, 2, 3]], None),  # does not start at 0 (a cache offset)
        ([[0, 1, 3]], None),  # a gap: not runs of 0, 1, …
    ],
)
def test_segments_are_the_runs_of_restarting_positions(positions, want) -> None:
    assert segments(torch.tensor(positions)) == want


def test_per_example_attention_equals_the_block_diagonal_mask(tok, batch) -> None:
    plain = loss_and_grads(lora_model(tok), batch)
    fast = loss_and_grads(lora_model(tok), batch, attention=True)
    assert_same(plain, fast)


def test_packed_attention_switches_only_for_the_run_and_leaves_generation_alone(tok) -> None:
    model = tiny_model(tok)
    prompt = torch.tensor([[5, 9, 11, 40, 41]])
    want = model.generate(prompt, max_new_tokens=6, do_sample=False, pad_token_id=0)
    with packed_attention(model) as on:
        assert on and model.config._attn_implementation == NAME
        padded = torch.tensor([[0, 5, 9, 11, 40, 41]])
        mask = torch.tensor([[0, 1, 1, 1, 1, 1]])
        got = model.generate(prompt, max_new_tokens=6, do_sample=False, pad_token_id=0)
        got_masked = model.generate(
            padded, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0
        )
    assert model.config._attn_implementation == "sdpa"
    assert torch.equal(got, want)  # a KV cache: transformers' own sdpa path
    assert torch.equal(got_masked[:, 1:], want)  # a padding mask: the same
    model.config._attn_implementation = "eager"
    with packed_attention(model) as on:
        assert not on and model.config._attn_implementation == "eager"


def test_frozen_mlp_keeps_the_gradients_and_is_undone_on_exit(tok, batch) -> None:
    model = lora_model(tok)
    plain = loss_and_grads(model, batch)
    fast = loss_and_grads(model, batch, mlp=True)
    assert_same(plain, fast)
    mlps = [m for m in model.modules() if type(m).__name__ == "LlamaMLP"]
    assert mlps and all("forward" not in vars(m) for m in mlps)


def test_frozen_mlp_survives_train_and_eval_switches(tok, batch, monkeypatch) -> None:
    # transformers hands a model to the `kernels` package's kernelize on every train()/eval(),
    # which resets the instance forward of layers it knows (RMSNorm, for one) to their class's;
    # the trainer switches modes after swapping the MLPs in, so the swap must outlive that.
    from adaptune.train.fast import mlp

    calls = []
    real = mlp._FrozenGatedMLP.apply
    monkeypatch.setattr(mlp._FrozenGatedMLP, "apply", lambda *a: calls.append(1) or real(*a))
    model = lora_model(tok)
    if importlib.util.find_spec("kernels") is not None:
        model.get_base_model().set_use_kernels(True)  # as transformers loads the real model
    with frozen_mlps(model) as swapped:
        model.eval()
        model.train()
        model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits.sum()
    assert swapped and len(calls) == swapped


def test_frozen_mlp_saves_a_third_less_for_the_backward_pass(tok, batch) -> None:
    def saved_bytes(**paths) -> int:
        model, seen = lora_model(tok), {}

        def keep(t):
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
            loss_and_grads(model, batch, **paths)
        return sum(n for ptr, n in seen.items() if ptr not in params)

    assert saved_bytes(mlp=True) < saved_bytes()


def test_mlps_with_lora_layers_or_other_maths_keep_their_own_forward(tok) -> None:
    model = lora_model(tok, target="all-linear")
    with frozen_mlps(model) as swapped:
        assert swapped == 0

    class Doubled(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.gate_proj, self.up_proj, self.down_proj = (
                inner.gate_proj, inner.up_proj, inner.down_proj
            )  # fmt: skip
            self.act_fn = inner.act_fn

        def forward(self, x):
            return 2 * self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))

    base = tiny_model(tok)
    base.model.layers[0].mlp = Doubled(base.model.layers[0].mlp)
    plain = [layer.mlp for layer in base.model.layers[1:]]
    with frozen_mlps(base.requires_grad_(False)) as swapped:
        assert type(base.model.layers[0].mlp) is Doubled  # checked per class: it keeps its own
        assert swapped == len(plain) > 0
        assert all(type(m).__name__ == "FrozenLlamaMLP" for m in plain)


@pytest.mark.parametrize("n", [3, 5, 2 * 7 + 1])
def test_fused_head_loss_and_gradient_equal_cross_entropy(monkeypatch, n) -> None:
    monkeypatch.setattr(loss_module, "CHUNK", 7)  # several chunks and a ragged last one
    torch.manual_seed(0)
    head = nn.Linear(16, 50, bias=True).requires_grad_(False)
    hidden = torch.randn(n, 16, requires_grad=True)
    targets = torch.randint(0, 50, (n,))
    want = nn.functional.cross_entropy(head(hidden), targets, reduction="sum")
    (want * 3).backward()
    want_grad, hidden.grad = hidden.grad.clone(), None
    got = head_nll(head, hidden, targets)
    (got * 3).backward()
    assert float(got.detach()) == pytest.approx(float(want.detach()), rel=1e-5)
    assert torch.allclose(hidden.grad, want_grad, atol=1e-5)
    with torch.no_grad():
        assert float(head_nll(head, hidden, targets)) == pytest.approx(float(want), rel=1e-5)


def test_a_trainable_head_takes_the_plain_path_and_gets_its_gradient() -> None:
    head = nn.Linear(8, 20)
    hidden = torch.randn(4, 8, requires_grad=True)
    head_nll(head, hidden, torch.tensor([1, 2, 3, 4])).backward()
    assert head.weight.grad is not None and hidden.grad is not None


def test_every_fast_path_together_equals_the_plain_full_logits_model(tok, batch) -> None:
    plain = loss_and_grads(lora_model(tok), batch, head_only=False)
    fast = loss_and_grads(lora_model(tok), batch, attention=True, mlp=True, norm=True)
    assert_same(plain, fast)


def _rows(*lengths: int) -> list[Row]:
    return [Row(tuple([1] * n), tuple([1] * n), tuple(range(n)), 1) for n in lengths]


@pytest.mark.parametrize(
    ("lengths", "batch_size", "budget", "want"),
    [
        ((100, 100, 100, 100), 4, None, [4]),
        ((100, 100, 100, 100), 2, None, [2, 2]),
        ((100, 100, 100, 100), 4, 250, [2, 2]),
        ((100, 300, 50), 4, 350, [1, 1, 1]),  # padded to the longest row
        ((500, 20), 4, 256, [1, 1]),  # a row longer than the budget still goes, alone
        ((60, 60, 60, 60, 60), 3, 130, [2, 1, 2]),  # never across accumulation steps
    ],
)
def test_forward_groups_fit_the_token_budget(lengths, batch_size, budget, want) -> None:
    rows = _rows(*lengths)
    groups = forward_groups(rows, batch_size, budget)
    assert [len(g) for g in groups] == want
    assert [r for g in groups for r in g] == rows


def test_segments_are_worked_out_once_per_position_tensor(monkeypatch) -> None:
    from adaptune.train.fast import attention

    calls = []
    real = attention.segments
    monkeypatch.setattr(attention, "segments", lambda p: calls.append(1) or real(p))
    positions = torch.tensor([[0, 1, 2, 0, 1]])
    assert attention._segments_once(positions, 1) == [[3, 2]]
    assert attention._segments_once(positions, 1) == [[3, 2]] and len(calls) == 1
    assert attention._segments_once(positions, 2) == [[3, 2], [3, 2]] and len(calls) == 2
    positions[0, 3:] = torch.tensor([3, 4])  # changed in place: worked out again
    assert attention._segments_once(positions, 2) == [[5], [5]] and len(calls) == 3
