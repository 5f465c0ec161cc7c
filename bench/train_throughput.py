"""Training throughput of adaptune's trainer beside a plain Trainer + PEFT LoRA baseline (and TRL).

Measures, in one run, on the same real qa examples (the training examples of every window of a
dataset build of the 6,419-issue huggingface/datasets dump, without retrieved context, so every
variant sees the same token ids) and the default model (SmolLM2-135M-Instruct, fp32, on CPU):

(a) ``plain``: transformers ``Trainer`` + PEFT LoRA (r=16, alpha=32, dropout 0.05 on the q, k,
    v, o projections), batches of 8 examples right-padded to the longest (at most 256 tokens),
    labels -100 on padding and prompt, the model's own full-logits loss, AdamW. The named baseline.
    ``plain_bf16``: the same with the Trainer's ``bf16=True`` (autocast), to show what bf16
    alone gives the baseline.
(b) ``trl_sft``: TRL's ``SFTTrainer`` with its own packing (best-fit decreasing, 256 tokens, 8
    packed sequences per step, flattened padding-free); only if TRL is installed (``--install-trl``
    installs it when ``pip install --dry-run trl`` leaves torch alone), else the JSON says why.
(c) ``adaptune``: :func:`adaptune.train.train` with ``strategy="from-base"``, packed rows of
    ``--max-len`` tokens, 8 rows per step, with the trainer's defaults: forward passes of at most
    1,024 tokens (``forward_tokens``), each packed example attended alone, the head only at
    answer positions and chunked, the frozen MLPs keeping two activations, the compiled kernels
    where the CPU has AVX-512 BF16 (attention with the rotary embedding inside, one-pass norms
    and gated SiLU: :mod:`adaptune.train.fast.compiled`), and its default precision ``auto`` (bf16
    autocast where the CPU multiplies bf16 natively, as AVX-512 BF16 and AMX do; fp32
    elsewhere: the JSON says which it used). ``adaptune_fp32``: the same in
    fp32, which separates what the fast paths give from what bf16 gives. The per-step losses
    of the two (same rows, same seed) are compared in ``bf16_loss_gap``.

Every variant uses the same token ids (:func:`adaptune.train.format.encode_example` with
``max_len=256``), runs in its own subprocess with 2 torch threads for 1 warm-up step (not timed)
plus ``--steps`` timed optimizer steps, and reports real (non-padding) input tokens per second
(every input token of the examples processed, prompt included; the same count for all
variants), seconds per step and the peak RSS of its process (``VmHWM``).

FLOP ceiling and share: the machine's ceilings are fp32 and bf16 ``torch.matmul`` of 2048×2048
matrices on 2 threads, measured before and after the variants (the higher is used); a variant's
share is of the ceiling of the precision it trained in. Training FLOPs per real token are
``4·N + 6·N_lora + A``, with N the base model's parameter count (tied embedding counted once:
the head matmul is real work, the embedding lookup is not): a LoRA run does the forward (2·N)
and the input-gradient backward (2·N) through every frozen weight but no weight-gradient
backward for them (the 3rd 2·N of the usual 6·N·T), while the LoRA weights do all three
(6·N_lora). ``A`` is attention's own work, the scores and their weighted sum, which the PaLM
paper's MFU counts too (there without the causal half): here only the causal half within each
example, forward and backward, 6·layers·heads·head_dim·L(L+1) per example of L tokens,
averaged per token over the pool (about 14 % on top of 4·N at 1,024 tokens). Every variant
is credited the same FLOPs per real token whatever it skips or wastes (padding, a head on
prompt positions, a mask across packed examples), so the share is model-FLOP utilisation,
comparable across variants; ``ceiling_share_without_attention`` is the share without ``A``,
as earlier versions of this script reported it.

(d) Adaptive iteration cost: for the first 4 qa windows of the build (and the latest, for
contrast), the examples and real tokens (``max_len`` 1024, the default) that ``adaptive`` (25 %
replay), ``from-base`` and ``cumulative`` would train on
(:func:`adaptune.train.strategies.select`, no training).

Goals (printed, not asserted): adaptune ≥ 2.5× the plain baseline's tokens/s (no less than 1.8×),
≥ 70 % of the FLOP ceiling, peak RSS under 4 GB. Writes ``bench/results/train_throughput.json``.

``--max-len`` (default 256) sets the row and example length and ``--micro-batch`` the rows per
forward pass of the baselines (8 per optimizer step, accumulated); ``--forward-tokens`` is
adaptune's token budget per forward pass (default: the trainer's, 1,024) and
``--release-memory`` its opt-in glibc setting. The committed result:

    python bench/train_throughput.py --max-len 1024 --micro-batch 2 --steps 6 --install-trl

1024 is the trainer's default ``max_len``: there the plain baseline pads 27 % (42 % in batches
of 8), which a 256-token cut hides.
On a shared machine, read the load averages and the median-step numbers in the JSON beside the
headline ones. The default model is cached once under ``ADAPTUNE_BENCH_HOME``
(``~/.cache/adaptune/bench-home``).

    python bench/train_throughput.py [--src PATH] [--steps 6] [--install-trl]

The data, machine and measuring helpers are in ``bench/throughput_common.py``, the derived
numbers and tables in ``bench/throughput_report.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput_common import (
    Meter,
    attention_flops,
    bench_pool,
    build_examples,
    iteration_cost,
    matmul_ceiling,
    padded_share,
    peak_rss_mb,
    read_pool,
    trl_status,
    write_pool,
)
from throughput_report import (
    GOALS,
    flops_share,
    goals_met,
    loss_gap,
    median_speedup,
    print_tables,
    ratio,
)

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT.parent / "shared/data/github/huggingface-datasets.issues.jsonl.gz"
HOME = Path(os.environ.get("ADAPTUNE_BENCH_HOME", "~/.cache/adaptune/bench-home")).expanduser()
VARIANTS = ("plain", "plain_bf16", "trl_sft", "adaptune_fp32", "adaptune")
BF16 = ("plain_bf16",)
"""Variants that train in bf16 whatever the machine (adaptune's own default says in its JSON)."""
BATCH, MAX_LEN, THREADS = 8, 256, 2
MICRO = 8
"""Rows (or padded examples) per forward pass; BATCH / MICRO passes are accumulated per step."""
OURS_TOKENS: int | None = None
"""adaptune's ``forward_tokens`` (``None``: the trainer's default)."""
RELEASE = False
"""adaptune's ``release_memory``."""
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
LORA = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "lr": 2e-4}


# --- variants (each in its own process) --------------------------------------------------------


def lora_model(model: Any) -> Any:
    """The baseline's LoRA: the same settings adaptune uses, through plain PEFT."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=LORA["r"],
        lora_alpha=LORA["lora_alpha"],
        lora_dropout=LORA["lora_dropout"],
        target_modules=list(TARGETS),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def trainer_args(cls: Any, out: Path, steps: int, bf16: bool = False, **extra: Any) -> Any:
    """Training arguments shared by (a) and (b): fp32 (bf16 autocast with ``bf16``), no
    recompute, no saving, no reporting."""
    return cls(
        output_dir=str(out),
        per_device_train_batch_size=MICRO,
        gradient_accumulation_steps=BATCH // MICRO,
        max_steps=steps,
        learning_rate=LORA["lr"],
        optim="adamw_torch",
        lr_scheduler_type="cosine",
        weight_decay=0.0,
        max_grad_norm=1.0,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        gradient_checkpointing=False,
        bf16=bf16,
        use_cpu=True,
        seed=0,
        **extra,
    )


def clock_callback(meter: Meter) -> Any:
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            meter.tick()

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                meter.losses.append(float(logs["loss"]))

    return Clock()


def run_plain(
    model: Any, tokenizer: Any, encoded: Sequence[Any], steps: int, out: Path, bf16: bool = False
) -> Meter:
    """(a) Trainer + PEFT, padded batches, full logits (``bf16``: the Trainer's bf16 autocast)."""
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    meter = Meter()
    model.get_decoder().register_forward_pre_hook(meter.count, with_kwargs=True)
    tokenizer.padding_side = "right"
    rows = [{"input_ids": list(e.input_ids), "labels": list(e.labels)} for e in encoded]
    collator = DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100)
    trainer = Trainer(
        model=lora_model(model),
        args=trainer_args(TrainingArguments, out, steps, bf16=bf16),
        train_dataset=rows,
        data_collator=collator,
        callbacks=[clock_callback(meter)],
    )
    trainer.train()
    return meter


def run_trl(model: Any, tokenizer: Any, encoded: Sequence[Any], steps: int, out: Path) -> Meter:
    """(b) TRL SFTTrainer, its own best-fit-decreasing packing (padding-free), full logits."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    meter = Meter()
    model.get_decoder().register_forward_pre_hook(meter.count, with_kwargs=True)
    data = Dataset.from_dict(
        {
            "input_ids": [list(e.input_ids) for e in encoded],
            "labels": [list(e.labels) for e in encoded],
        }
    )
    args = trainer_args(
        SFTConfig, out, steps, max_length=MAX_LEN, packing=True, packing_strategy="bfd",
        pad_to_multiple_of=None,
    )  # fmt: skip
    trainer = SFTTrainer(
        model=lora_model(model),
        args=args,
        train_dataset=data,
        processing_class=tokenizer,
        callbacks=[clock_callback(meter)],
    )
    trainer.train()
    return meter


def run_adaptune(
    model: Any, tokenizer: Any, pool: Sequence[Any], steps: int, out: Path, precision: str = "auto"
) -> Meter:
    """(c) adaptune.train.train, from-base, packed rows of MAX_LEN, BATCH rows per step, in
    ``precision`` (the trainer's default: ``auto``); the meter's ``precision`` is what it used."""
    from adaptune.train import TrainConfig, train

    meter = Meter()
    model.get_decoder().register_forward_pre_hook(meter.count, with_kwargs=True)
    tokens: list[int] = []

    def progress(p: Any) -> None:
        meter.tick()
        tokens.append(round(p.tokens_per_s * p.elapsed_s))  # cumulative real tokens

    budget = {} if OURS_TOKENS is None else {"forward_tokens": OURS_TOKENS}
    config = TrainConfig(
        strategy="from-base",
        batch_size=BATCH,
        grad_accum=1,
        release_memory=RELEASE,
        max_len=MAX_LEN,
        max_steps=steps,
        lr=LORA["lr"],
        lora_r=LORA["r"],
        lora_alpha=LORA["lora_alpha"],
        lora_dropout=LORA["lora_dropout"],
        checkpoint_every=0,
        precision=precision,
        **budget,
    )
    result = train(pool, config, out, model=model, tokenizer=tokenizer, progress=progress)
    meter.precision = result.manifest["config"]["precision"]
    meter.losses = list(result.losses)
    meter.real = [b - a for a, b in zip([0, *tokens], tokens, strict=False)]
    return meter


def child(variant: str, pool_path: Path, steps: int, result_path: Path) -> None:
    """Run one variant for ``steps`` optimizer steps; write its numbers to ``result_path``."""
    import torch

    torch.set_num_threads(THREADS)
    from adaptune.train.format import encode_example
    from adaptune.train.model import load_base

    started, load = time.perf_counter(), os.getloadavg()
    pool = read_pool(pool_path)
    model, tokenizer, _info = load_base(None, HOME)
    params = sum(p.numel() for p in model.parameters())
    lora_params = sum(
        LORA["r"] * (m.in_features + m.out_features)
        for name, m in model.named_modules()
        if name.rsplit(".", 1)[-1] in TARGETS and isinstance(m, torch.nn.Linear)
    )
    encoded = [encode_example(tokenizer, ex, MAX_LEN) for ex in pool]
    lengths = [len(e.input_ids) for e in encoded]
    with tempfile.TemporaryDirectory() as tmp:
        if variant.startswith("adaptune"):
            precision = "fp32" if variant == "adaptune_fp32" else "auto"
            meter = run_adaptune(model, tokenizer, pool, steps, Path(tmp), precision)
        elif variant.startswith("plain"):
            meter = run_plain(model, tokenizer, encoded, steps, Path(tmp), variant in BF16)
            meter.precision = "bf16" if variant in BF16 else "fp32"
        else:
            meter = run_trl(model, tokenizer, encoded, steps, Path(tmp))
    out = meter.result()
    out.update(
        params=params,
        lora_params=lora_params,
        attention_flops_per_token=round(attention_flops(model.config, lengths)),
        peak_rss_mb=round(peak_rss_mb()),
        wall_s=round(time.perf_counter() - started, 1),
        loadavg_before=[round(x, 2) for x in load],
        loadavg_after=[round(x, 2) for x in os.getloadavg()],
    )
    if variant.startswith("adaptune"):
        from adaptune.train.fast import fused, native

        kernels = {"attention": native.available(), "elementwise": fused.available()}
        out["compiled_kernels"] = kernels
    result_path.write_text(json.dumps(out) + "\n")


def spawn(variant: str, pool_path: Path, steps: int, tmp: Path) -> dict[str, Any]:
    """Run ``variant`` in a fresh interpreter (so its peak RSS is its own)."""
    result = tmp / f"{variant}.json"
    cmd = [sys.executable, __file__, "--child", variant, "--pool", str(pool_path)]
    cmd += ["--steps", str(steps + 1), "--result", str(result)]
    cmd += ["--max-len", str(MAX_LEN), "--micro-batch", str(MICRO)]
    cmd += ["--forward-tokens", str(OURS_TOKENS or 0)] + (["--release-memory"] if RELEASE else [])
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "TOKENIZERS_PARALLELISM": "false"}
    print(f"running {variant} …", flush=True)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not result.exists():
        tail = (done.stderr or done.stdout).strip()[-2000:]
        return {"error": f"exit {done.returncode}", "stderr_tail": tail}
    return json.loads(result.read_text())


def main() -> None:
    """Build the data, run the variants back to back, print the tables, write the JSON."""
    global MAX_LEN, MICRO, OURS_TOKENS, RELEASE  # the children read them as module settings
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--src", type=Path, default=SRC)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/train_throughput.json")
    ap.add_argument("--steps", type=int, default=6, help="timed optimizer steps (after 1 warm-up)")
    ap.add_argument("--install-trl", action="store_true", help="pip install trl if torch stays")
    ap.add_argument("--max-len", type=int, default=MAX_LEN, help="tokens per row / example")
    ap.add_argument("--micro-batch", type=int, default=MICRO, help="rows per forward (divides 8)")
    ap.add_argument("--forward-tokens", type=int, help="adaptune's tokens per forward pass")
    ap.add_argument("--release-memory", action="store_true", help="adaptune's release_memory")
    ap.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated subset (plain is needed)"
    )
    ap.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    ap.add_argument("--pool", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    MAX_LEN, MICRO = args.max_len, args.micro_batch
    OURS_TOKENS, RELEASE = args.forward_tokens or None, args.release_memory
    if BATCH % MICRO:
        raise SystemExit(f"micro-batches must divide {BATCH}")
    if args.child:
        return child(args.child, args.pool, args.steps, args.result)
    if not args.src.exists():
        raise SystemExit(f"{args.src} is absent: the real data lives in ../shared/data")
    import torch

    from adaptune.train import TrainConfig

    torch.set_num_threads(THREADS)
    started, load = time.perf_counter(), os.getloadavg()
    ceiling_before = {p: matmul_ceiling(precision=p) for p in ("fp32", "bf16")}
    trl_ok, trl_note = trl_status(args.install_trl)
    with tempfile.TemporaryDirectory() as tmp:
        examples = build_examples(args.src, Path(tmp) / "home")
        pool = bench_pool(examples)
        write_pool(pool, Path(tmp) / "pool.jsonl")
        variants: dict[str, Any] = {}
        chosen = [v.strip() for v in args.variants.split(",")]
        for name in VARIANTS:
            if name not in chosen:
                variants[name] = {"skipped": "not selected with --variants in this run"}
                continue
            if name == "trl_sft" and not trl_ok:
                variants[name] = {"skipped": trl_note}
                continue
            variants[name] = spawn(name, Path(tmp) / "pool.jsonl", args.steps, Path(tmp))
    ceiling_after = {p: matmul_ceiling(precision=p) for p in ("fp32", "bf16")}
    ceilings = {p: round(max(ceiling_before[p], ceiling_after[p]), 1) for p in ceiling_before}
    for v in variants.values():
        v["ceiling_share"] = flops_share(v, ceilings)
        v["ceiling_share_without_attention"] = flops_share(v, ceilings, attention=False)
    cost, sizes = iteration_cost(examples, HOME)
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}, "
        f"torch {torch.__version__}, {THREADS} threads",
        "loadavg_start": [round(x, 2) for x in load],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "data": {
            "source": args.src.name,
            "qa_examples": len(examples),
            "pool_train_examples": len(pool),
            "retrieved_context": False,
            "max_len": MAX_LEN,
            "rows_per_step": BATCH,
            "rows_per_forward": MICRO,
            "adaptune_forward_tokens": OURS_TOKENS or TrainConfig().forward_tokens,
            "adaptune_release_memory": RELEASE,
            "adaptune_precision": variants["adaptune"].get("precision"),
        },
        "timed_steps": args.steps,
        "warmup_steps": 1,
        "ceiling_gflops": ceilings["fp32"],
        "ceiling_gflops_bf16": ceilings["bf16"],
        "ceiling_gflops_before_after": {
            p: [round(ceiling_before[p], 1), round(ceiling_after[p], 1)] for p in ceilings
        },
        "flops_per_real_token": "4*params + 6*lora_params + attention_flops_per_token (docstring)",
        "trl": trl_note,
        "variants": variants,
        "speedup_vs_plain": ratio(variants, "adaptune", "plain"),
        "speedup_fp32_vs_plain": ratio(variants, "adaptune_fp32", "plain"),
        "speedup_vs_plain_bf16": ratio(variants, "adaptune", "plain_bf16"),
        "bf16_loss_gap": loss_gap(variants),
        "speedup_vs_plain_median_step": median_speedup(variants),
        "iteration_cost": cost,
        "plain_padding_share_at_max_len_1024": padded_share(list(sizes.values()), BATCH),
        "mean_example_tokens_at_max_len_1024": round(sum(sizes.values()) / len(sizes), 1),
        "goals": GOALS,
        "bench_wall_s": 0.0,
    }
    result["goals_met"] = goals_met(result)
    result["bench_wall_s"] = round(time.perf_counter() - started, 1)
    print_tables(result, THREADS)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
