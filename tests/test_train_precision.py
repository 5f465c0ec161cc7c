"""bf16 mixed precision: what ``auto`` picks, that the fast paths work under autocast and keep
the LoRA weights, their gradients and the head's logits in fp32, and that a bf16 run trains,
resumes exactly and records the precision it used."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from adaptune.errors import ConfigError
from adaptune.train import TrainConfig, train
from adaptune.train import precision as precision_module
from adaptune.train.loss import head_nll
from adaptune.train.precision import (
    autocast,
    low_precision_weights,
    native_bf16_cpu,
    resolve,
)
from test_train_fastpaths import batch as batch
from test_train_fastpaths import lora_model, loss_and_grads
from tiny_model import example, tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CPU = torch.device("cpu")
FAST = {"max_len": 256, "batch_size": 2, "lr": 1e-2, "warmup_ratio": 0.0, "lora_dropout": 0.0}


def cpuinfo(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / f"cpuinfo-{len(flags)}"
    path.write_text(f"processor\t: 0\nvendor_id\t: X\nflags\t\t: fpu sse2 avx2 {flags}\n\n")
    return path


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path: Path) -> None:
    assert native_bf16_cpu(cpuinfo(tmp_path, "avx512f avx512_bf16"))
    assert native_bf16_cpu(cpuinfo(tmp_path, "amx_tile amx_bf16 amx_int8"))
    assert not native_bf16_cpu(cpuinfo(tmp_path, "avx512f"))
    assert not native_bf16_cpu(tmp_path / "absent")


def test_auto_resolves_by_the_hardware_unless_the_environment_says(monkeypatch) -> None:
    monkeypatch.delenv(precision_module.ENV, raising=False)
    for native, want in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(precision_module, "native_bf16_cpu", lambda n=native: n)
        assert resolve("auto", CPU) == want
        assert resolve("fp32", CPU) == "fp32" and resolve("bf16", CPU) == "bf16"
    monkeypatch.setenv(precision_module.ENV, "bf16")
    assert resolve("auto", CPU) == "bf16" and resolve("fp32", CPU) == "fp32"
    monkeypatch.setenv(precision_module.ENV, "fp16")
    with pytest.raises(ValueError, match=precision_module.ENV):
        resolve("auto", CPU)
    with pytest.raises(ValueError, match="precision"):
        resolve("half", CPU)
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig(precision="half")  # type: ignore[arg-type]


def test_the_head_keeps_fp32_logits_under_autocast() -> None:
    torch.manual_seed(0)
    head = nn.Linear(16, 50, bias=False).requires_grad_(False)
    hidden = torch.randn(9, 16) * 4
    targets = torch.randint(0, 50, (9,))
    want = head_nll(head, hidden, targets)
    with autocast("bf16", CPU):
        got = head_nll(head, hidden, targets)
        rounded = nn.functional.cross_entropy(head(hidden).float(), targets, reduction="sum")
    assert got.dtype == torch.float32 and float(got) == pytest.approx(float(want), rel=1e-6)
    assert float(rounded) != pytest.approx(float(want), rel=1e-6)  # autocast would round them


def test_every_fast_path_runs_under_bf16_close_to_fp32_with_fp32_gradients(tok, batch) -> None:
    paths = {"attention": True, "mlp": True}
    fp32 = loss_and_grads(lora_model(tok), batch, **paths)
    with autocast("bf16", CPU):
        bf16 = loss_and_grads(lora_model(tok), batch, **paths)
        plain = loss_and_grads(lora_model(tok), batch, head_only=False)  # autocast, no fast path
    assert bf16[0] == pytest.approx(fp32[0], rel=2e-2)
    assert bf16[0] == pytest.approx(plain[0], rel=2e-2)
    assert all(g.dtype == torch.float32 for g in bf16[1])
    for ours, ref in zip(bf16[1], fp32[1], strict=True):
        cosine = nn.functional.cosine_similarity(ours.flatten(), ref.flatten(), dim=0)
        assert float(cosine) > 0.98


def test_a_bf16_run_learns_records_its_precision_and_resumes_exactly(tok, tmp_path) -> None:
    data = [example(i, "w001") for i in range(8)]
    cfg = TrainConfig(strategy="from-base", max_steps=12, checkpoint_every=0, precision="bf16",
                      **FAST)  # fmt: skip
    run = train(data, cfg, tmp_path / "a", model=tiny_model(tok), tokenizer=tok)
    assert sum(run.losses[-3:]) / 3 < 0.8 * sum(run.losses[:3]) / 3
    manifest = json.loads((run.adapter_dir / "adaptune-train.json").read_text())
    assert manifest["config"]["precision"] == "bf16"
    saved = load_file(str(run.adapter_dir / "adapter_model.safetensors"))
    assert saved and all(t.dtype == torch.float32 for t in saved.values())
    fp32 = TrainConfig(**{**cfg.to_dict(), "precision": "fp32"})
    other = train(data, fp32, tmp_path / "b", model=tiny_model(tok), tokenizer=tok)
    assert other.config_hash != run.config_hash and other.losses != run.losses

    short = TrainConfig(**{**cfg.to_dict(), "max_steps": 4, "checkpoint_every": 2})
    whole = train(data, short, tmp_path / "c", model=tiny_model(tok), tokenizer=tok)
    train(data, short, tmp_path / "d", model=tiny_model(tok), tokenizer=tok)
    assert [p.name for p in (tmp_path / "d" / "checkpoints").iterdir()] == ["step-000002"]
    resumed = train(data, short, tmp_path / "d", model=tiny_model(tok), tokenizer=tok, resume=True)
    assert resumed.losses == whole.losses
    a, b = (load_file(str(r.adapter_dir / "adapter_model.safetensors")) for r in (whole, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_auto_trains_in_what_it_resolves_to(tok, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(precision_module.ENV, "bf16")
    cfg = TrainConfig(strategy="from-base", max_steps=1, checkpoint_every=0, **FAST)
    run = train([example(0, "w001")], cfg, tmp_path, model=tiny_model(tok), tokenizer=tok)
    assert run.manifest["config"]["precision"] == "bf16"


def test_frozen_linear_weights_are_bf16_inside_and_the_same_fp32_after(tok) -> None:
    model = lora_model(tok)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    head = model.get_output_embeddings()
    with low_precision_weights(model, "fp32") as swapped:
        assert swapped == 0
    with low_precision_weights(model, "bf16") as swapped:
        linears = [m for m in model.modules() if type(m) is nn.Linear]
        frozen = [m for m in linears if not m.weight.requires_grad and m is not head]
        assert swapped == len(frozen) > 0
        assert all(m.weight.dtype == torch.bfloat16 for m in frozen)
        assert head.weight.dtype == torch.float32  # the logits stay fp32
        assert all(m.weight.dtype == torch.float32 for m in linears if m.weight.requires_grad)
    after = dict(model.named_parameters())
    assert before.keys() == after.keys()
    assert all(
        torch.equal(before[n], after[n]) and after[n].dtype == before[n].dtype for n in after
    )


def test_a_weight_shared_by_two_linears_stays_shared_and_exact() -> None:
    first, second = nn.Linear(8, 8, bias=False), nn.Linear(8, 8, bias=False)
    second.weight = first.weight
    first.weight.requires_grad_(False)
    model = nn.Sequential(first, second)
    before, original = first.weight.detach().clone(), first.weight
    with low_precision_weights(model, "bf16") as swapped:
        assert swapped == 2 and first.weight is second.weight
        assert first.weight.dtype == torch.bfloat16
    assert first.weight is second.weight and first.weight.dtype == torch.float32
    assert torch.equal(first.weight, before) and not first.weight.requires_grad
    assert first.weight is original  # the very fp32 parameter is put back


def test_weights_are_put_back_when_the_run_inside_fails(tok) -> None:
    model = lora_model(tok)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with pytest.raises(RuntimeError, match="boom"), low_precision_weights(model, "bf16"):
        raise RuntimeError("boom")
    after = dict(model.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in after)
