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
    answer positions and chunked, the frozen MLPs keeping two activations, and its default
    precision ``auto`` (bf16 autocast where the CPU multiplies bf16 natively, as AVX-512 BF16
    and AMX do; fp32 elsewhere: the JSON says which it used). ``adaptune_fp32``: the same in
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
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
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
GOALS = {"speedup_min": 1.8, "speedup_target": 2.5, "ceiling_share": 0.70, "peak_rss_gb": 4.0}


# --- data --------------------------------------------------------------------------------------


def build_examples(src: Path, tmp: Path) -> list[Any]:
    """The qa examples of a fresh dataset build of ``src`` (ingest + build in ``tmp``)."""
    from adaptune.config import load_settings
    from adaptune.dataset import build
    from adaptune.dataset.artifacts import iter_examples
    from adaptune.ingest import ingest
    from adaptune.ingest.files import file_source
    from adaptune.store import open_store

    store = open_store(load_settings(home=tmp))
    try:
        ingest(file_source(src), store)
        result = build(store)
    finally:
        store.close()
    return list(iter_examples(result.path, "qa"))


def bench_pool(examples: Sequence[Any]) -> list[Any]:
    """Every window's training examples, without retrieved context, as one window ``bench``.

    One window so that ``from-base`` selects them all: enough rows for every step, and the same
    examples for every variant.
    """
    train = sorted((e for e in examples if e.split == "train"), key=lambda e: (e.known_at, e.id))
    meta = lambda e: {k: v for k, v in e.meta.items() if k != "context"}  # noqa: E731
    return [dataclasses.replace(e, window="bench", meta=meta(e)) for e in train]


def write_pool(pool: Sequence[Any], path: Path) -> None:
    from adaptune.dataset.artifacts import example_to_json

    with path.open("w", encoding="utf-8") as fh:
        for ex in pool:
            fh.write(json.dumps(example_to_json(ex), ensure_ascii=False) + "\n")


def read_pool(path: Path) -> list[Any]:
    from adaptune.dataset.artifacts import example_from_json

    with path.open(encoding="utf-8") as fh:
        return [example_from_json(json.loads(line)) for line in fh]


# --- machine ---------------------------------------------------------------------------------


def matmul_ceiling(
    n: int = 2048, reps: int = 10, rounds: int = 3, precision: str = "fp32"
) -> float:
    """GFLOP/s of ``n``×``n`` matmuls (fp32, or bf16 with ``precision="bf16"``) on this
    process's torch threads (best round)."""
    import torch

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    out = torch.empty(n, n, dtype=dtype)
    for _ in range(2):
        torch.matmul(a, b, out=out)
    best = 0.0
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.matmul(a, b, out=out)
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9)
    return best


def peak_rss_mb() -> float:
    """This process's peak resident set (``VmHWM``, reset by exec unlike ``ru_maxrss``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def trl_status(install: bool) -> tuple[bool, str]:
    """Whether TRL can run here, and why not; installs it first when asked and torch is safe."""
    if importlib.util.find_spec("trl") is not None:
        from importlib.metadata import version

        return True, f"trl {version('trl')} installed"
    pip = [sys.executable, "-m", "pip", "install"]
    dry = subprocess.run([*pip, "--dry-run", "trl"], capture_output=True, text=True, check=False)
    would = next((ln for ln in dry.stdout.splitlines() if ln.startswith("Would install")), "")
    if dry.returncode != 0:
        return False, f"pip install --dry-run trl failed: {dry.stderr.strip()[-300:]}"
    if any(word.startswith(("torch-", "nvidia-", "triton-")) for word in would.split()):
        return False, f"pip install trl would change torch or add CUDA: {would}"
    if not install:
        return False, f"trl not installed; it would install cleanly ({would}): pass --install-trl"
    done = subprocess.run([*pip, "trl"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return False, f"pip install trl failed: {done.stderr.strip()[-300:]}"
    return True, f"installed by this run: {would}"


# --- variants (each in its own process) --------------------------------------------------------


class Meter:
    """Per-step end times and per-forward token counts, shared by the three variants."""

    def __init__(self) -> None:
        self.ends: list[float] = []
        self.cpu: list[float] = []
        self.real: list[int] = []
        self.fed: list[int] = []
        self.losses: list[float] = []
        self.bounds: list[int] = []
        """Forward passes counted when each step ended."""
        self.precision = "fp32"
        """The precision the variant trained in."""

    def count(self, module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        """Forward pre-hook on the decoder: real and fed (padding included) tokens of a training
        forward (the trainers' own checks run in eval mode and are not counted)."""
        if not module.training:
            return
        ids, mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
        self.fed.append(ids.numel())
        self.real.append(int(mask.sum()) if mask is not None else ids.numel())

    def tick(self) -> None:
        """An optimizer step ended."""
        self.ends.append(time.perf_counter())
        self.cpu.append(time.process_time())
        self.bounds.append(len(self.fed))

    def result(self) -> dict[str, Any]:
        """Timed numbers: every step after the first (the warm-up).

        ``tokens_per_s`` is the run's (all timed tokens over all timed seconds); the median
        step's rate and the CPU seconds per step are there to judge noise on a shared machine.
        """
        steps = len(self.ends) - 1
        seconds = self.ends[-1] - self.ends[0]
        edges = list(zip([0, *self.bounds], self.bounds, strict=False))  # each step's forwards
        fed_steps = [sum(self.fed[a:b]) for a, b in edges]
        real_steps = self.real
        if len(self.real) == len(self.fed):  # counted per forward, not per step
            real_steps = [sum(self.real[a:b]) for a, b in edges]
        real, fed = sum(real_steps[1:]), sum(fed_steps[1:])
        step_s = [b - a for a, b in zip(self.ends, self.ends[1:], strict=False)]
        rates = sorted(n / t for n, t in zip(real_steps[1:], step_s, strict=False))
        return {
            "timed_steps": steps,
            "seconds": round(seconds, 2),
            "s_per_step": round(seconds / steps, 2),
            "real_tokens": real,
            "fed_tokens": fed,
            "padding_share": round(1 - real / fed, 3) if fed else None,
            "tokens_per_s": round(real / seconds, 1),
            "tokens_per_s_median_step": round(rates[len(rates) // 2], 1),
            "cpu_s_per_step": round((self.cpu[-1] - self.cpu[0]) / steps, 2),
            "step_s": [round(t, 2) for t in step_s],
            "losses": [round(x, 4) for x in self.losses],
            "precision": self.precision,
        }


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


def attention_flops(config: Any, lengths: Sequence[int]) -> float:
    """Attention's FLOPs per real token, forward and backward, each example attended causally
    on its own: 3 × 2 matmuls × 2 FLOPs × heads·head_dim × L(L+1)/2 per layer (docstring)."""
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    per_example = sum(n * (n + 1) for n in lengths)
    return 6 * config.num_hidden_layers * heads * head_dim * per_example / max(1, sum(lengths))


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


# --- (d) adaptive iteration cost ---------------------------------------------------------------


def iteration_cost(
    examples: Sequence[Any], windows: int = 4
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Examples and real tokens each strategy would train on, for the first ``windows`` windows.

    The latest window is added as a last row for contrast with the first ones. Also hands back
    every training example's length at that ``max_len`` (by id).
    """
    from transformers import AutoTokenizer

    from adaptune.train import TrainConfig
    from adaptune.train.format import encode_example
    from adaptune.train.model import default_cache, prepare_tokenizer
    from adaptune.train.strategies import select, window_order

    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(default_cache(HOME)))
    pool = [e for e in examples if e.split == "train"]
    order = window_order(pool)
    max_len, sizes = TrainConfig().max_len, {}
    rows = []
    shown = order[:windows] + (order[-1:] if len(order) > windows else [])
    for window in shown:
        row: dict[str, Any] = {"window": window, "index": order.index(window)}
        for strategy in ("adaptive", "from-base", "cumulative"):
            chosen = select(pool, strategy, window, replay_share=0.25, seed=0).examples
            for ex in chosen:
                if ex.id not in sizes:
                    sizes[ex.id] = len(encode_example(tokenizer, ex, max_len))
            row[strategy] = {"examples": len(chosen), "tokens": sum(sizes[e.id] for e in chosen)}
        rows.append(row)
    return rows, sizes


def padded_share(lengths: Sequence[int], batch: int = BATCH, seed: int = 0) -> float:
    """Padding share of the plain baseline's batches (shuffled, padded to the longest)."""
    import random

    order = list(lengths)
    random.Random(seed).shuffle(order)
    batches = [order[i : i + batch] for i in range(0, len(order), batch)]
    fed = sum(len(b) * max(b) for b in batches)
    return round(1 - sum(order) / fed, 3)


# --- report ------------------------------------------------------------------------------------


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


def print_tables(result: dict[str, Any]) -> None:
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
        f"matmul ceiling on {THREADS} threads: {result['ceiling_gflops']} GFLOP/s fp32, "
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
    cost, sizes = iteration_cost(examples)
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
        "plain_padding_share_at_max_len_1024": padded_share(list(sizes.values())),
        "mean_example_tokens_at_max_len_1024": round(sum(sizes.values()) / len(sizes), 1),
        "goals": GOALS,
        "bench_wall_s": 0.0,
    }
    result["goals_met"] = goals_met(result)
    result["bench_wall_s"] = round(time.perf_counter() - started, 1)
    print_tables(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
