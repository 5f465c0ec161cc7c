"""Where one adaptune training step spends its time, by kind of operation, in fp32 and in bf16.

The companion of ``bench/train_throughput.py`` (same examples, same model, same settings as its
``adaptune`` variant: from-base, 8 packed rows of ``--max-len`` tokens per step): it trains one
warm-up step and profiles the next with :mod:`torch.profiler`, once per precision, each in its
own process, and groups the operators' self CPU time into matrix multiplies
(``mm``/``addmm``/``bmm``), attention (PyTorch's CPU flash-attention kernel, forward and
backward, or every operator inside adaptune's own bf16 attention, blocked or compiled), casts
(``copy_``/``_to_copy``) and the rest (element-wise work, the optimizer, …).
Self CPU time adds up over both threads' operators as the profiler reports them, so read the
shares rather than the seconds. It is what says why the share of the matmul ceiling stops where
it does (the throughput bench's ``ceiling_share``). Writes ``bench/results/train_profile.json``.

    python bench/train_profile.py [--max-len 1024] [--precisions fp32,bf16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_throughput as tt

GROUPS = {
    "matmul": ("aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::baddbmm"),
    "attention": ("aten::_scaled_dot_product_flash_attention_for_cpu",
                  "aten::_scaled_dot_product_flash_attention_for_cpu_backward"),
    "casts": ("aten::copy_", "aten::_to_copy"),
}  # fmt: skip


BLOCKED = ("_BlockedCausal", "_NativeCausal")
"""adaptune's own bf16 attention (:mod:`adaptune.train.fast.blocked`,
:mod:`adaptune.train.fast.native`): autograd functions whose own time and whose operators
(matmuls, softmaxes, packing) count as attention, found by their ancestors' names."""


def group(name: str, ancestors: tuple[str, ...] = ()) -> str:
    """The kind of an operator, by its profiler name and the names of the events around it."""
    if any(b in a for a in ancestors for b in BLOCKED):
        return "attention"
    return next((g for g, names in GROUPS.items() if name in names), "other")


def ancestry(event: Any) -> tuple[str, ...]:
    """The names of the events that enclose ``event`` (its CPU parents), innermost first."""
    names, parent = [], event.cpu_parent
    while parent is not None:
        names.append(parent.name)
        parent = parent.cpu_parent
    return tuple(names)


def child(precision: str, pool_path: Path, result: Path) -> None:
    """Train 2 steps in ``precision``; profile the second; write the grouped times."""
    import torch
    from torch.profiler import ProfilerActivity, profile, schedule

    from adaptune.train.model import load_base

    torch.set_num_threads(tt.THREADS)
    pool = tt.read_pool(pool_path)
    model, tokenizer, _info = load_base(None, tt.HOME)
    prof = profile(activities=[ProfilerActivity.CPU], schedule=schedule(wait=1, warmup=0, active=1))

    def on_step(_progress: Any) -> None:
        prof.step()

    with prof, tempfile.TemporaryDirectory() as tmp:
        # run_adaptune's settings; its meter is not needed here, so train directly
        from adaptune.train import TrainConfig, train

        config = TrainConfig(
            strategy="from-base", batch_size=tt.BATCH, grad_accum=1, max_len=tt.MAX_LEN,
            max_steps=2, lr=tt.LORA["lr"], lora_r=tt.LORA["r"], lora_alpha=tt.LORA["lora_alpha"],
            lora_dropout=tt.LORA["lora_dropout"], checkpoint_every=0, precision=precision,
        )  # fmt: skip
        train(pool, config, Path(tmp), model=model, tokenizer=tokenizer, progress=on_step)
    times: dict[str, float] = {}
    ops: dict[str, dict[str, float]] = {}
    for event in prof.events():
        kind = group(event.name, (event.name, *ancestry(event)))
        seconds = event.self_cpu_time_total / 1e6
        times[kind] = times.get(kind, 0.0) + seconds
        ops.setdefault(kind, {})
        ops[kind][event.name] = ops[kind].get(event.name, 0.0) + seconds
    total = sum(times.values())
    out = {
        "self_cpu_s": {k: round(v, 2) for k, v in sorted(times.items())},
        "share": {k: round(v / total, 3) for k, v in sorted(times.items())},
        "total_self_cpu_s": round(total, 2),
        "top_operators_s": {
            kind: {k: round(v, 2) for k, v in sorted(named.items(), key=lambda kv: -kv[1])[:8]}
            for kind, named in sorted(ops.items())
        },
    }
    result.write_text(json.dumps(out) + "\n")


def main() -> None:
    """Build the pool once, profile each precision in its own process, print, write JSON."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--src", type=Path, default=tt.SRC)
    ap.add_argument("--out", type=Path, default=tt.ROOT / "bench/results/train_profile.json")
    ap.add_argument("--max-len", type=int, default=1024)
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--pool", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    tt.MAX_LEN = args.max_len
    if args.child:
        return child(args.child, args.pool, args.result)
    if not args.src.exists():
        raise SystemExit(f"{args.src} is absent: the real data lives in ../shared/data")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        pool_path = Path(tmp) / "pool.jsonl"
        tt.write_pool(tt.bench_pool(tt.build_examples(args.src, Path(tmp) / "home")), pool_path)
        for precision in args.precisions.split(","):
            result = Path(tmp) / f"{precision}.json"
            cmd = [sys.executable, __file__, "--child", precision, "--pool", str(pool_path)]
            cmd += ["--result", str(result), "--max-len", str(args.max_len)]
            env = {**os.environ, "OMP_NUM_THREADS": str(tt.THREADS)}
            print(f"profiling a {precision} step …", flush=True)
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0 or not result.exists():
                results[precision] = {"error": (done.stderr or done.stdout).strip()[-2000:]}
                continue
            results[precision] = json.loads(result.read_text())
    print(f"{'precision':<10}" + "".join(f"{g:>18}" for g in (*GROUPS, "other")))
    for precision, r in results.items():
        if "share" not in r:
            print(f"{precision:<10} failed: {r['error'][-300:]}")
            continue
        cells = "".join(
            f"{r['self_cpu_s'].get(g, 0):>9.1f} s {r['share'].get(g, 0):>5.0%}"
            for g in (*GROUPS, "other")
        )
        print(f"{precision:<10}{cells}")
    out = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "max_len": args.max_len,
        "rows_per_step": tt.BATCH,
        "threads": tt.THREADS,
        "precisions": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
