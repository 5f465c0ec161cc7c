"""Causal attention of one example, forward and backward, in bf16 on the CPU: PyTorch's flash
kernel (``scaled_dot_product_attention``, what adaptune used before and still uses in fp32) vs
adaptune's blocked bf16 kernel (:func:`adaptune.train.fast.blocked.causal_attention`) at
several block sizes vs adaptune's compiled kernel
(:func:`adaptune.train.fast.native.causal_attention`, where the CPU has avx512_bf16; what
training uses there).

Shapes are SmolLM2-135M's (9 query heads sharing 3 key heads, head_dim 64), laid out as
transformers hands them to the attention function, under bf16 autocast as in training; the flash
baseline gets its key heads repeated as adaptune's per-example path did for it. Lengths: single
examples of 100–1,000 tokens, and a mixed set of 24 examples of 40–460 tokens. Each cell is the
best of ``--repeats`` timed passes (after one warm-up), reported in ms and in GFLOP/s of causal
work (``6·heads·head_dim·L(L+1)`` per example, the throughput bench's count). Writes
``bench/results/attention_kernel.json``.

    python bench/attention_kernel.py [--repeats 5] [--blocks 64,96,128,192,256]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch.nn import functional as F

from adaptune.train.fast import blocked, native

ROOT = Path(__file__).resolve().parents[1]
HEADS, KV_HEADS, HEAD_DIM, THREADS = 9, 3, 64, 2
SINGLE = (100, 200, 300, 500, 700, 1000)
Example = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def example(length: int, seed: int) -> Example:
    """q, k, v in transformers' layout (a ``(L, heads, d)`` buffer seen as ``(heads, L, d)``),
    fp32 leaves as after RoPE in bf16 autocast training, and an output gradient."""
    g = torch.Generator().manual_seed(seed)

    def leaf(heads: int) -> torch.Tensor:
        t = torch.randn(length, heads, HEAD_DIM, generator=g).transpose(0, 1)
        return t.requires_grad_()

    grad = torch.randn(length, HEADS, HEAD_DIM, generator=g).to(torch.bfloat16)
    return leaf(HEADS), leaf(KV_HEADS), leaf(KV_HEADS), grad


def flash(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grad: torch.Tensor) -> None:
    groups = HEADS // KV_HEADS
    with torch.autocast("cpu", dtype=torch.bfloat16):
        k, v = k.repeat_interleave(groups, 0), v.repeat_interleave(groups, 0)
        out = F.scaled_dot_product_attention(q[None], k[None], v[None], is_causal=True)
    out.backward(grad.transpose(0, 1)[None])


def ours(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grad: torch.Tensor) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = blocked.causal_attention(q, k, v)
    out.backward(grad)


def best_seconds(fn: Callable[..., None], examples: list[Example], repeats: int) -> float:
    """The fastest of ``repeats`` passes over ``examples`` (one warm-up pass first)."""

    def one_pass() -> float:
        started = time.perf_counter()
        for q, k, v, grad in examples:
            q.grad = k.grad = v.grad = None
            fn(q, k, v, grad)
        return time.perf_counter() - started

    one_pass()
    return min(one_pass() for _ in range(repeats))


def native_kernel(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grad: torch.Tensor) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = native.causal_attention(q, k, v)
    out.backward(grad)


def causal_gflop(lengths: list[int]) -> float:
    return 6 * HEADS * HEAD_DIM * sum(n * (n + 1) for n in lengths) / 1e9


def main() -> None:
    """Time every case, print a table, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--blocks", default="64,96,128,192,256")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/attention_kernel.json")
    args = ap.parse_args()
    torch.set_num_threads(THREADS)
    blocks = [int(b) for b in args.blocks.split(",")]
    rng = random.Random(0)
    cases = {f"L={n}": [n] for n in SINGLE}
    cases["mixed 24 × 40–460"] = [rng.randint(40, 460) for _ in range(24)]
    default, rows = blocked.BLOCK, []
    compiled = native.available(HEAD_DIM)
    print(f"{'case':<20}{'flash ms':>10}" + "".join(f"{f'B={b} ms':>11}" for b in blocks)
          + (f"{'native ms':>11}" if compiled else ""))  # fmt: skip
    try:
        for name, lengths in cases.items():
            examples = [example(n, seed) for seed, n in enumerate(lengths)]
            flash_s = best_seconds(flash, examples, args.repeats)
            blocked_s = {}
            for block in blocks:
                blocked.BLOCK = block
                blocked_s[block] = best_seconds(ours, examples, args.repeats)
            blocked.BLOCK = default
            native_s = best_seconds(native_kernel, examples, args.repeats) if compiled else None
            gflop = causal_gflop(lengths)
            rows.append({
                "case": name, "lengths": lengths, "causal_gflop": round(gflop, 3),
                "flash_ms": round(flash_s * 1e3, 2),
                "flash_gflops": round(gflop / flash_s, 1),
                "blocked_ms": {str(b): round(s * 1e3, 2) for b, s in blocked_s.items()},
                "blocked_gflops": {str(b): round(gflop / s, 1) for b, s in blocked_s.items()},
                "speedup_at_default_block": round(flash_s / blocked_s.get(default, flash_s), 2),
            })  # fmt: skip
            if native_s is not None:
                rows[-1] |= {
                    "native_ms": round(native_s * 1e3, 2),
                    "native_gflops": round(gflop / native_s, 1),
                    "native_vs_blocked_default": round(blocked_s.get(default, 0) / native_s, 2),
                }
            cells = "".join(f"{s * 1e3:>11.1f}" for s in [*blocked_s.values(), native_s] if s)
            print(f"{name:<20}{flash_s * 1e3:>10.1f}{cells}")
    finally:
        blocked.BLOCK = default
    totals = {b: sum(r["blocked_ms"][str(b)] for r in rows) for b in blocks}
    flash_total = sum(r["flash_ms"] for r in rows)
    native_total = sum(r["native_ms"] for r in rows) if compiled else None
    cells = "".join(f"{t:>11.1f}" for t in [*totals.values(), native_total] if t)
    print(f"{'all cases':<20}{flash_total:>10.1f}{cells}")
    if not compiled:
        print("native kernel: not available here (needs avx512_bf16 and gcc), not timed")
    print(f"default block {default}: " + ", ".join(
        f"{r['case']} {r['speedup_at_default_block']}x" for r in rows
    ))  # fmt: skip
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{THREADS} threads",
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "shape": {"heads": HEADS, "kv_heads": KV_HEADS, "head_dim": HEAD_DIM},
        "default_block": default,
        "repeats": args.repeats,
        "cases": rows,
        "total_ms": {"flash": round(flash_total, 1)}
        | {str(b): round(t, 1) for b, t in totals.items()}
        | ({"native": round(native_total, 1)} if native_total else {}),
        "native_available": compiled,
        "fastest_block_overall": min(totals, key=totals.get),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
