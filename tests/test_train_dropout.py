"""The trainer's LoRA dropout: the rate and expectation of dropout, shared by q/k/v, exact grads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from adaptune.train import TrainConfig, lora, train
from adaptune.train.dropout import SharedDropout, share_lora_dropout, sparse_dropout
from tiny_model import example, tiny_model, tiny_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_sparse_dropout_has_the_rate_and_keeps_the_mean() -> None:
    torch.manual_seed(0)
    x = torch.ones(400_000)
    out = sparse_dropout(x, 0.05)
    dropped = (out == 0).float().mean().item()
    assert dropped == pytest.approx(0.05, abs=0.002)
    assert out.mean().item() == pytest.approx(1.0, abs=0.005)
    assert out.unique().tolist() == [0.0, pytest.approx(1 / 0.95)]
    assert sparse_dropout(x, 0.0) is x


def test_sparse_dropout_gradient_is_the_mask_times_the_scale() -> None:
    torch.manual_seed(1)
    x = (torch.rand(64, 33) + 0.5).requires_grad_()
    weights = torch.randn(64, 33)
    out = sparse_dropout(x, 0.3)
    (out * weights).sum().backward()
    kept = (out != 0).float()
    assert kept.mean().item() == pytest.approx(0.7, abs=0.06)
    assert torch.allclose(x.grad, weights * kept / 0.7)
    strided = torch.rand(40, 30).t().requires_grad_()  # non-contiguous input
    sparse_dropout(strided, 0.5).sum().backward()
    assert strided.grad.shape == strided.shape


def test_q_k_v_share_one_draw_and_o_gets_its_own() -> None:
    tok = tiny_tokenizer()
    model = lora.attach(tiny_model(tok), dropout=0.1)
    assert share_lora_dropout(model) == 4 * model.config.num_hidden_layers
    seen: dict[str, torch.Tensor] = {}
    for name, module in model.named_modules():
        if name.endswith("lora_A.default") and ".layers.0." in name:
            proj = name.split(".")[-3]
            module.register_forward_pre_hook(lambda _m, a, p=proj: seen.__setitem__(p, a[0]))
    model.train()
    ids = torch.randint(5, 100, (2, 24))
    model(input_ids=ids).logits.sum().backward()
    assert seen["q_proj"] is seen["k_proj"] is seen["v_proj"]
    assert seen["o_proj"] is not seen["q_proj"]
    assert 0 < (seen["q_proj"] == 0).float().mean().item() < 0.3
    model.eval()
    drop = next(m for m in model.modules() if isinstance(m, SharedDropout))
    x = torch.randn(3, 8)
    assert drop(x) is x  # evaluation: no dropout
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, model(input_ids=ids).logits)


def _data() -> list:
    return [example(i, "w001") for i in range(6)]


def test_shared_draws_train_deterministically_and_like_peft(tmp_path: Path) -> None:
    tok = tiny_tokenizer()
    fast = {"max_len": 256, "batch_size": 2, "lr": 1e-2, "warmup_ratio": 0.0}
    cfg = TrainConfig(strategy="from-base", max_steps=12, checkpoint_every=0, **fast)
    runs = [
        train(_data(), cfg, tmp_path / str(i), model=tiny_model(tok), tokenizer=tok) for i in (1, 2)
    ]
    assert runs[0].losses == runs[1].losses  # seeded: the same drops every run
    peft_cfg = TrainConfig(**{**cfg.to_dict(), "dropout_draw": "peft"})
    peft = train(_data(), peft_cfg, tmp_path / "p", model=tiny_model(tok), tokenizer=tok)
    assert runs[0].losses != peft.losses  # other draws …
    for run in (runs[0], peft):  # … but both learn
        assert sum(run.losses[-3:]) < 0.8 * sum(run.losses[:3])
    assert runs[0].losses[0] == pytest.approx(peft.losses[0], rel=0.05)
    gc_cfg = TrainConfig(**{**cfg.to_dict(), "max_steps": 3, "grad_checkpointing": True})
    plain_cfg = TrainConfig(**{**cfg.to_dict(), "max_steps": 3})
    gc = train(_data(), gc_cfg, tmp_path / "gc", model=tiny_model(tok), tokenizer=tok)
    plain = train(_data(), plain_cfg, tmp_path / "np", model=tiny_model(tok), tokenizer=tok)
    assert gc.losses == pytest.approx(plain.losses, abs=1e-5)  # recompute redraws the same


def test_dropout_draw_is_validated() -> None:
    from adaptune.errors import ConfigError

    with pytest.raises(ConfigError, match="dropout_draw"):
        TrainConfig(dropout_draw="dense")  # type: ignore[arg-type]
