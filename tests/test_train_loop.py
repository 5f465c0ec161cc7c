"""The stage entry end to end on the tiny model: learning, artefacts, parents, checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

from adaptune.errors import ConfigError
from adaptune.train import CheckpointError, Progress, TrainConfig, load_base, train
from adaptune.train.checkpoint import MANIFEST, WEIGHTS
from tiny_model import example, save_tiny, tiny_model

FAST = {"max_len": 256, "batch_size": 2, "lr": 1e-2, "warmup_ratio": 0.0, "lora_dropout": 0.0}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def model(tok):
    return tiny_model(tok)


def data(window: str = "w001", n: int = 8, start: int = 0) -> list:
    return [example(start + i, window) for i in range(n)]


def test_a_few_steps_lower_the_loss_and_write_a_peft_adapter(model, tok, tmp_path) -> None:
    seen: list[Progress] = []
    cfg = TrainConfig(strategy="from-base", max_steps=24, checkpoint_every=0, **FAST)
    result = train(data(), cfg, tmp_path / "run", model=model, tokenizer=tok, progress=seen.append)
    assert len(result.losses) == 24 and result.final_loss == result.losses[-1]
    assert sum(result.losses[-4:]) / 4 < 0.7 * sum(result.losses[:4]) / 4
    assert [p.step for p in seen] == list(range(1, 25)) and seen[-1].eta_s == 0
    assert all(p.total_steps == 24 and p.tokens_per_s > 0 for p in seen)
    cost = result.cost
    assert cost["examples"] == 8 and cost["steps"] == 24 and cost["seconds"] > 0
    assert cost["tokens"] > 24 * 2 * 50 and cost["tokens_per_s"] > 0
    manifest = json.loads((result.adapter_dir / "adaptune-train.json").read_text())
    assert manifest["config_hash"] == result.config_hash and manifest["window"] == "w001"
    assert manifest["base"]["sha256"] and manifest["parent"] is None
    assert not any("lora" in name for name, _ in model.named_modules())  # handed back clean
    loaded = PeftModel.from_pretrained(tiny_model(tok), str(result.adapter_dir)).eval()
    ids = torch.tensor([[1, 40, 41, 42]])
    with torch.no_grad():
        assert not torch.allclose(loaded(input_ids=ids).logits, model(input_ids=ids).logits)


def test_runs_are_deterministic_by_seed(tok, tmp_path) -> None:
    cfg = TrainConfig(strategy="from-base", max_steps=3, checkpoint_every=0, **FAST)
    runs = [
        train(data(), cfg, tmp_path / str(i), model=tiny_model(tok), tokenizer=tok) for i in (1, 2)
    ]
    assert runs[0].losses == runs[1].losses and runs[0].config_hash == runs[1].config_hash


def test_adaptive_continues_the_parent_adapter(model, tok, tmp_path) -> None:
    base_cfg = TrainConfig(strategy="from-base", max_steps=20, checkpoint_every=0, **FAST)
    parent = train(data(), base_cfg, tmp_path / "parent", model=model, tokenizer=tok)
    later = data() + data("w002", 8, start=100)  # the same four failures, recurring
    child_cfg = TrainConfig(strategy="adaptive", max_steps=1, checkpoint_every=0, **FAST)
    fresh = train(later, child_cfg, tmp_path / "fresh", model=model, tokenizer=tok)
    tiny_lr = TrainConfig(**{**child_cfg.to_dict(), "lr": 1e-9})
    child = train(
        later, tiny_lr, tmp_path / "child", parent.adapter_dir, model=model, tokenizer=tok
    )
    assert child.manifest["parent"] == str(parent.adapter_dir) and child.manifest["replayed"] == 2
    assert child.losses[0] < fresh.losses[0]  # it starts from what the parent learned
    want = load_file(str(parent.adapter_dir / "adapter_model.safetensors"))
    got = load_file(str(child.adapter_dir / "adapter_model.safetensors"))
    assert want.keys() == got.keys()
    assert all(torch.allclose(want[k], got[k], atol=1e-6) for k in want)
    ignored = train(
        later, base_cfg, tmp_path / "base", parent.adapter_dir, model=model, tokenizer=tok
    )
    assert ignored.manifest["parent"] is None


def test_checkpoints_refuse_another_run_and_corruption(model, tok, tmp_path) -> None:
    cfg = TrainConfig(strategy="from-base", max_steps=4, checkpoint_every=2, **FAST)
    out = tmp_path / "run"
    train(data(), cfg, out, model=model, tokenizer=tok)
    ckpt = out / "checkpoints" / "step-000002"
    assert {p.name for p in ckpt.iterdir()} == {MANIFEST, WEIGHTS, "state.pt"}
    resumed = train(data(), cfg, out, model=model, tokenizer=tok, resume=True)
    assert len(resumed.losses) == 4
    other = TrainConfig(**{**cfg.to_dict(), "lr": 5e-3})
    with pytest.raises(CheckpointError, match=f"{ckpt / MANIFEST}.*another run"):
        train(data(), other, out, model=model, tokenizer=tok, resume=True)
    raw = bytearray((ckpt / WEIGHTS).read_bytes())
    raw[-1] ^= 0xFF
    (ckpt / WEIGHTS).write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=f"{ckpt / WEIGHTS}.*corrupt"):
        train(data(), cfg, out, model=model, tokenizer=tok, resume=True)
    (ckpt / MANIFEST).write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable"):
        train(data(), cfg, out, model=model, tokenizer=tok, resume=True)
    assert not any("lora" in name for name, _ in model.named_modules())


def test_a_model_folder_loads_offline_and_a_missing_one_is_a_config_error(tmp_path) -> None:
    folder = save_tiny(tmp_path / "tiny")
    model, tokenizer, info = load_base(str(folder), tmp_path / "home")
    assert not model.use_kernels  # no Hub kernels fetched on a GPU, at load or train()/eval()
    assert info.path == str(folder) and len(info.sha256) == 64 and info.dtype == "torch.float32"
    assert tokenizer.chat_template and tokenizer.pad_token == "<|endoftext|>"
    with pytest.raises(ConfigError, match="does not exist"):
        load_base(str(tmp_path / "nowhere"), tmp_path / "home")
    with pytest.raises(ConfigError, match="Hugging Face cache"):
        load_base("nobody/no-such-model", tmp_path / "home")


@pytest.mark.parametrize(
    ("field", "value"),
    [("strategy", "sometimes"), ("target", "mlp"), ("lr", 0), ("max_len", 8), ("epochs", 0)],
)
def test_config_is_validated(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**{field: value})


def test_config_hash_ignores_how_but_not_what() -> None:
    from adaptune.train.config import run_hash

    base = TrainConfig()
    same = TrainConfig(checkpoint_every=7, grad_checkpointing=True, release_memory=True)
    assert run_hash(base, "d", "b", None) == run_hash(same, "d", "b", None)
    assert run_hash(base, "d", "b", None) != run_hash(TrainConfig(lr=1e-3), "d", "b", None)
    assert run_hash(base, "d", "b", None) != run_hash(base, "d", "b", "parent")


def test_grad_checkpointing_gives_the_same_losses(tok, tmp_path: Path) -> None:
    cfg = TrainConfig(strategy="from-base", max_steps=2, checkpoint_every=0, **FAST)
    plain = train(data(), cfg, tmp_path / "a", model=tiny_model(tok), tokenizer=tok)
    cfg_gc = TrainConfig(**{**cfg.to_dict(), "grad_checkpointing": True})
    gc = train(data(), cfg_gc, tmp_path / "b", model=tiny_model(tok), tokenizer=tok)
    assert gc.losses == pytest.approx(plain.losses, abs=1e-5)


def test_a_token_budget_per_forward_changes_memory_not_what_a_step_learns(tok, tmp_path) -> None:
    cfg = TrainConfig(strategy="from-base", max_steps=3, checkpoint_every=0, forward_tokens=None,
                      **{**FAST, "batch_size": 4})  # fmt: skip
    whole = train(data(), cfg, tmp_path / "a", model=tiny_model(tok), tokenizer=tok)
    cut = TrainConfig(**{**cfg.to_dict(), "forward_tokens": 64})  # one row per forward
    split = train(data(), cut, tmp_path / "b", model=tiny_model(tok), tokenizer=tok)
    assert split.losses == pytest.approx(whole.losses, abs=1e-5)
    assert split.config_hash != whole.config_hash  # dropout draws follow the passes


def test_a_loaded_model_passed_in_keeps_the_weight_files_hash(tok, tmp_path: Path) -> None:
    """compare passes a loaded model on; its adapters must record the hash `train` records."""
    from adaptune.train.model import describe, params_sha256

    folder = save_tiny(tmp_path / "tiny")
    loaded, loaded_tok, info = load_base(str(folder), tmp_path / "home")
    assert describe(loaded).sha256 == info.sha256 != params_sha256(loaded)
    fresh = tiny_model(tok)
    assert describe(fresh).sha256 == params_sha256(fresh)
    cfg = TrainConfig(strategy="from-base", max_steps=1, checkpoint_every=0, **FAST)
    result = train(data(), cfg, tmp_path / "run", model=loaded, tokenizer=loaded_tok)
    assert result.manifest["base"]["sha256"] == info.sha256


def test_model_checks_run_on_an_examples_tail_and_still_catch_a_changed_head(
    model, tok, monkeypatch
) -> None:
    import adaptune.train as train_module
    from adaptune.train import CHECK_TOKENS, _checks
    from adaptune.train.format import IGNORE, encode_example
    from adaptune.train.lora import attach

    seen: list[tuple[int, int]] = []
    real = train_module.head_only_matches

    def spy(lm, input_ids, labels):
        seen.append((input_ids.shape[1], int((labels != IGNORE).sum())))
        return real(lm, input_ids, labels)

    monkeypatch.setattr(train_module, "head_only_matches", spy)
    encoded = encode_example(tok, example(1, body="a long body of text " * 40), 512)
    assert len(encoded) > 2 * CHECK_TOKENS
    peft_model = attach(model, dropout=0.0)
    assert _checks(peft_model, encoded) == (True, True)
    assert seen[0][0] == CHECK_TOKENS and seen[0][1] > 0  # the tail, answer labels included
    head = peft_model.get_base_model().lm_head  # the model's own logits now differ from its head
    hook = head.register_forward_hook(lambda _module, _args, out: out * 2)
    try:
        assert _checks(peft_model, encoded) == (False, True)
    finally:
        hook.remove()
