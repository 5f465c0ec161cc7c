"""The derived numbers and the printed tables of ``bench/train_throughput.py``: each variant's
share of its matmul ceiling, the speed-ups, the bf16 loss gap and the issue's goals."""

from __future__ import annotations

from typing import Any

GOALS = {"speedup_min": 1.8, "speedup_target": 2.5, "ceiling_share": 0.70, "peak_rss_gb": 4.0}


def flops_share(
    result: dict[str, Any], ceilings: dict[str, float], attention: bool = True
) -> float | None:
    """Share of the matmul ceiling of the variant's precision: ``4·N + 6·N_lora`` FLOPs per real
    token, plus attention's own with ``attention`` (module docstring)."""
    if "tokens_per_s" not in result:
        return None
    per_token = 4 * result["params"] + 6 * result["lora_params"]
    per_token += result.get("attention_flops_per_token", 0) if attention else 0
    ceiling = ceilings[result.get("precision", "fp32")]
    return round(result["tokens_per_s"] * per_token / (ceiling * 1e9), 3)


def ratio(variants: dict[str, Any], ours: str, base: str) -> float | None:
    """tokens/s of variant ``ours`` over variant ``base`` (``None`` if either did not run)."""
    a, b = (variants.get(k, {}).get("tokens_per_s") for k in (ours, base))
    return round(a / b, 2) if a and b else None


def loss_gap(variants: dict[str, Any]) -> dict[str, Any] | None:
    """Per-step losses of adaptune in its own precision against adaptune in fp32 (same rows,
    same seed, same initialisation): the mean and largest absolute difference."""
    ours, fp32 = (variants.get(k, {}) for k in ("adaptune", "adaptune_fp32"))
    if ours.get("precision") != "bf16" or not (ours.get("losses") and fp32.get("losses")):
        return None
    gaps = [abs(a - b) for a, b in zip(ours["losses"], fp32["losses"], strict=False)]
    mean = sum(fp32["losses"]) / len(fp32["losses"])
    return {"mean_abs": round(sum(gaps) / len(gaps), 4), "max_abs": round(max(gaps), 4),
            "mean_fp32_loss": round(mean, 4)}  # fmt: skip


def median_speedup(variants: dict[str, Any]) -> float | None:
    """The speed-up from each run's median step: less sensitive to other processes' bursts."""
    plain, ours = (variants[k].get("tokens_per_s_median_step") for k in ("plain", "adaptune"))
    return round(ours / plain, 2) if plain and ours else None


def print_tables(result: dict[str, Any], threads: int) -> None:
    """The variants, the ceilings, the iteration costs and the goals, as text tables."""
    head = f"{'variant':<14}{'prec':>5}{'tok/s':>8}{'median':>8}{'s/step':>8}{'pad':>6}"
    print(head + f"{'RSS MB':>8}{'ceiling':>9}{'wall s':>8}  vs plain")
    plain = result["variants"]["plain"].get("tokens_per_s")
    for name, v in result["variants"].items():
        if "tokens_per_s" not in v:
            print(f"{name:<14}  skipped: {v.get('skipped') or v.get('error')}")
            continue
        times = f"{v['tokens_per_s'] / plain:.2f}x" if plain else "-"
        print(
            f"{name:<14}{v['precision']:>5}{v['tokens_per_s']:>8.0f}"
            f"{v['tokens_per_s_median_step']:>8.0f}{v['s_per_step']:>8.2f}"
            f"{v['padding_share']:>6.0%}{v['peak_rss_mb']:>8}{v['ceiling_share']:>9.1%}"
            f"{v['wall_s']:>8.0f}  {times}"
        )
    print(
        f"matmul ceiling on {threads} threads: {result['ceiling_gflops']} GFLOP/s fp32, "
        f"{result['ceiling_gflops_bf16']} GFLOP/s bf16 (each variant's share is of its own)"
    )
    print(
        f"plain's padding share would be {result['plain_padding_share_at_max_len_1024']:.0%} at "
        f"max_len 1024 (mean example {result['mean_example_tokens_at_max_len_1024']} tokens)"
    )
    print(
        f"\n{'window':<10}{'adaptive ex/tok':>20}{'from-base ex/tok':>20}{'cumulative ex/tok':>20}"
    )
    for row in result["iteration_cost"]:
        cells = "".join(
            f"{row[s]['examples']:>9} /{row[s]['tokens']:>9}"
            for s in ("adaptive", "from-base", "cumulative")
        )
        print(f"{row['window']:<10}{cells}")
    goals = result["goals"]
    print(
        f"\nspeed-up vs plain: {result['speedup_vs_plain']}x (median step: "
        f"{result['speedup_vs_plain_median_step']}x; adaptune in fp32: "
        f"{result['speedup_fp32_vs_plain']}x; adaptune vs plain in bf16: "
        f"{result['speedup_vs_plain_bf16']}x; bf16 vs fp32 step losses: "
        f"{result['bf16_loss_gap']}; goal ≥ {goals['speedup_target']}x, "
        f"at least {goals['speedup_min']}x); ceiling share ≥ {goals['ceiling_share']:.0%}; "
        f"peak RSS < {goals['peak_rss_gb']} GB; goals met: {result['goals_met']}"
    )


def goals_met(result: dict[str, Any]) -> dict[str, bool]:
    """Which of the issue's goals adaptune's default variant met (empty if it did not run)."""
    ours = result["variants"]["adaptune"]
    if "tokens_per_s" not in ours:
        return {}
    speedup = result["speedup_vs_plain"] or 0
    return {
        "speedup": speedup >= GOALS["speedup_target"],
        "speedup_floor": speedup >= GOALS["speedup_min"],
        "ceiling_share": (ours["ceiling_share"] or 0) >= GOALS["ceiling_share"],
        "peak_rss": ours["peak_rss_mb"] < GOALS["peak_rss_gb"] * 1000,
    }
