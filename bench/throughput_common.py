"""Data, machine and measuring helpers of ``bench/train_throughput.py`` (and of
``bench/train_profile.py``): the bench's example pool, the matmul ceiling, peak RSS, TRL's
availability, the per-step meter, attention's FLOPs and the adaptive iteration cost."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# --- data --------------------------------------------------------------------------------------


def build_examples(src: Path, tmp: Path) -> list[Any]:
    """The qa examples of a fresh dataset build of ``src`` (ingest + build in ``tmp``)."""
    from adaptune.config import load_settings
    from adaptune.dataset.artifacts import iter_examples
    from adaptune.ingest import ingest
    from adaptune.ingest.files import file_source
    from adaptune.pipeline import build_dataset
    from adaptune.store import open_store

    store = open_store(load_settings(home=tmp))
    try:
        ingest(file_source(src), store)
        result = build_dataset(store)
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
    """Write the pool as JSON lines (the children read it back with :func:`read_pool`)."""
    from adaptune.dataset.artifacts import example_to_json

    with path.open("w", encoding="utf-8") as fh:
        for ex in pool:
            fh.write(json.dumps(example_to_json(ex), ensure_ascii=False) + "\n")


def read_pool(path: Path) -> list[Any]:
    """The pool :func:`write_pool` wrote."""
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


# --- measuring --------------------------------------------------------------------------------


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


def attention_flops(config: Any, lengths: Sequence[int]) -> float:
    """Attention's FLOPs per real token, forward and backward, each example attended causally
    on its own: 3 × 2 matmuls × 2 FLOPs × heads·head_dim × L(L+1)/2 per layer (docstring)."""
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    per_example = sum(n * (n + 1) for n in lengths)
    return 6 * config.num_hidden_layers * heads * head_dim * per_example / max(1, sum(lengths))


# --- (d) adaptive iteration cost ---------------------------------------------------------------


def iteration_cost(
    examples: Sequence[Any], home: Path, windows: int = 4
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Examples and real tokens each strategy would train on, for the first ``windows`` windows.

    The latest window is added as a last row for contrast with the first ones. Also hands back
    every training example's length at that ``max_len`` (by id). The tokenizer is the default
    model's, cached under ``home``.
    """
    from transformers import AutoTokenizer

    from adaptune.train import TrainConfig
    from adaptune.train.format import encode_example
    from adaptune.train.model import default_cache, prepare_tokenizer
    from adaptune.train.strategies import select, window_order

    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(default_cache(home)))
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


def padded_share(lengths: Sequence[int], batch: int, seed: int = 0) -> float:
    """Padding share of the plain baseline's batches (shuffled, padded to the longest)."""
    import random

    order = list(lengths)
    random.Random(seed).shuffle(order)
    batches = [order[i : i + batch] for i in range(0, len(order), batch)]
    fed = sum(len(b) * max(b) for b in batches)
    return round(1 - sum(order) / fed, 3)
