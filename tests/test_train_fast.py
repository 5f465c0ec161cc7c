"""The one switch of training's CPU speed-ups (adaptune.train.fast.accelerate, TrainConfig.fast)
and the environment overrides training reads through adaptune.config, each with its meaning."""

from __future__ import annotations

from pathlib import Path

import pytest

from adaptune import config as env
from adaptune.train.config import TrainConfig, run_hash
from adaptune.train.fast import accelerate
from adaptune.train.fast.attention import NAME
from adaptune.train.lora import attach
from tiny_model import tiny_model, tiny_tokenizer


def classes(model) -> list[type]:
    return [type(m) for m in model.modules()]


def test_accelerate_swaps_in_and_back_and_fast_false_leaves_the_model_alone() -> None:
    model = attach(tiny_model(tiny_tokenizer()), dropout=0.0)
    lm_config = model.get_base_model().config
    before = classes(model)
    with accelerate(model, TrainConfig()) as applied:
        assert lm_config._attn_implementation == NAME
        assert applied["attention"] == 1 and applied["mlps"] == 2 and applied["norms"] == 5
        assert classes(model) != before
    assert classes(model) == before and lm_config._attn_implementation == "sdpa"
    with accelerate(model, TrainConfig(fast=False)) as applied:
        assert applied == {}
        assert classes(model) == before and lm_config._attn_implementation == "sdpa"


def test_the_switch_is_not_part_of_the_run_hash() -> None:
    off, on = (run_hash(TrainConfig(fast=fast), "d", "b", None) for fast in (False, True))
    assert off == on


def test_training_environment_overrides_keep_their_meaning(monkeypatch) -> None:
    assert set(env.TRAIN_ENV) == {env.TRAIN_PRECISION_ENV, env.NATIVE_KERNELS_ENV, env.CACHE_ENV}
    monkeypatch.delenv(env.TRAIN_PRECISION_ENV, raising=False)
    assert env.train_precision() is None
    for raw, want in ((" BF16 ", "bf16"), ("fp32", "fp32"), ("", None)):
        monkeypatch.setenv(env.TRAIN_PRECISION_ENV, raw)
        assert env.train_precision() == want
    monkeypatch.setenv(env.TRAIN_PRECISION_ENV, "fp16")
    with pytest.raises(ValueError, match=env.TRAIN_PRECISION_ENV):
        env.train_precision()

    monkeypatch.delenv(env.NATIVE_KERNELS_ENV, raising=False)
    assert env.native_kernels()
    for raw, want in (("0", False), ("1", True), ("off", True), ("", True)):
        monkeypatch.setenv(env.NATIVE_KERNELS_ENV, raw)
        assert env.native_kernels() is want

    monkeypatch.setenv(env.CACHE_ENV, "/somewhere")
    assert env.kernel_cache() == Path("/somewhere/adaptune/kernels")
    monkeypatch.setenv(env.CACHE_ENV, "")
    assert env.kernel_cache() == Path.home() / ".cache" / "adaptune" / "kernels"
