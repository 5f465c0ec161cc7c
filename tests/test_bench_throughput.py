"""The training throughput bench's arithmetic: attention FLOPs, ceiling shares, padding, the
per-step meter and the goals (``bench/throughput_common.py``, ``bench/throughput_report.py``).
Its timings are not tested; what it computes from them is."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import throughput_common as common
import throughput_report as report


def test_attention_flops_count_the_causal_half_of_each_example_per_token() -> None:
    config = SimpleNamespace(num_attention_heads=3, head_dim=4, hidden_size=12, num_hidden_layers=2)
    # 6 · layers · heads · head_dim · Σ L(L+1), over Σ L tokens
    assert common.attention_flops(config, [2, 3]) == pytest.approx(6 * 2 * 3 * 4 * 18 / 5)
    no_head_dim = SimpleNamespace(num_attention_heads=3, hidden_size=12, num_hidden_layers=2)
    assert common.attention_flops(no_head_dim, [2, 3]) == common.attention_flops(config, [2, 3])


def test_ceiling_share_is_of_the_variants_own_precision() -> None:
    result = {
        "tokens_per_s": 100.0, "params": 1000, "lora_params": 10,
        "attention_flops_per_token": 40, "precision": "bf16",
    }  # fmt: skip
    ceilings = {"fp32": 1.0, "bf16": 0.00082}  # GFLOP/s
    # (4·1000 + 6·10 + 40) FLOPs per token × 100 tokens/s over 820,000 FLOP/s
    assert report.flops_share(result, ceilings) == 0.5
    assert report.flops_share(result, ceilings, attention=False) == round(406_000 / 820_000, 3)
    assert report.flops_share({"skipped": "not run"}, ceilings) is None


def test_padding_share_pads_each_batch_to_its_longest() -> None:
    assert common.padded_share([1, 1, 2, 4], batch=4) == 0.5  # 8 real of 16 fed
    assert common.padded_share([3, 3, 3], batch=2) == 0.0


def test_meter_times_every_step_after_the_warm_up() -> None:
    meter = common.Meter()
    meter.ends, meter.cpu, meter.bounds = [0.0, 1.0, 3.0], [0.0, 2.0, 6.0], [1, 2, 4]
    meter.fed, meter.real = [10, 20, 20, 20], [10, 20, 15, 15]
    out = meter.result()
    assert out["timed_steps"] == 2 and out["seconds"] == 3.0
    assert out["real_tokens"] == 50 and out["fed_tokens"] == 60  # the warm-up's 10 left out
    assert out["padding_share"] == round(1 - 50 / 60, 3)
    assert out["tokens_per_s"] == round(50 / 3, 1)
    assert out["tokens_per_s_median_step"] == 20.0  # steps of 20 tok/1 s and 30 tok/2 s
    assert out["cpu_s_per_step"] == 3.0


def test_goals_need_the_target_speedup_the_share_and_the_memory() -> None:
    ours = {"tokens_per_s": 1.0, "ceiling_share": 0.71, "peak_rss_mb": 3999}
    result = {"variants": {"adaptune": ours}, "speedup_vs_plain": 2.5}
    assert report.goals_met(result) == {
        "speedup": True, "speedup_floor": True, "ceiling_share": True, "peak_rss": True,
    }  # fmt: skip
    ours.update(ceiling_share=0.55, peak_rss_mb=4000)
    result["speedup_vs_plain"] = 2.0
    assert report.goals_met(result) == {
        "speedup": False, "speedup_floor": True, "ceiling_share": False, "peak_rss": False,
    }  # fmt: skip
    assert report.goals_met({"variants": {"adaptune": {"error": "exit 1"}}}) == {}


def test_speedups_and_loss_gap_need_both_variants() -> None:
    variants = {
        "plain": {"tokens_per_s": 100.0, "tokens_per_s_median_step": 110.0},
        "adaptune": {"tokens_per_s": 300.0, "tokens_per_s_median_step": 330.0,
                     "precision": "bf16", "losses": [2.0, 1.5]},
        "adaptune_fp32": {"losses": [2.01, 1.48]},
    }  # fmt: skip
    assert report.ratio(variants, "adaptune", "plain") == 3.0
    assert report.ratio(variants, "adaptune", "trl_sft") is None
    assert report.median_speedup(variants) == 3.0
    gap = report.loss_gap(variants)
    assert gap == {"mean_abs": 0.015, "max_abs": 0.02, "mean_fp32_loss": 1.745}
    variants["adaptune"]["precision"] = "fp32"
    assert report.loss_gap(variants) is None
