"""Generation speed on a CPU: transformers + PEFT versus llama.cpp + GGUF LoRA, same prompts.

Both engines run the default model (SmolLM2-135M-Instruct; transformers on the weights
dequantised from the Q4_1 GGUF, llama.cpp on the GGUF itself) through the service's generator
classes, greedy, with the chat prompts of real issue questions, once with the base model and once
with a LoRA adapter (r=16 on q, k, v, o as the trainer makes them; random weights unless
``--adapter`` names a PEFT folder). The baseline is transformers. Also reported: llama.cpp's
load time, the one-off GGUF conversion of the adapter, and the switch between two adapters.

Writes ``bench/results/generation.json``.

    python bench/generation.py [--new-tokens 64] [--threads 2] [--adapter PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # before any OpenMP runtime starts

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
HOME = Path(os.environ.get("ADAPTUNE_BENCH_HOME", "~/.cache/adaptune/bench-home")).expanduser()
QUESTIONS = [
    "load_dataset('json') fails with ArrowInvalid on a column of mixed types",
    "map() with num_proc hangs on macOS with Python 3.11",
    "CUDA out of memory when loading a 7B model with vllm serve",
    "llama-server crashes with GGML_ASSERT when the context is full",
    "How do I push a dataset with a custom config name to the Hub?",
    "Tokenizer warning about truncation when batching long texts",
]
CONTEXT = (("Dataset.map slow with many processes", "Use batched=True and a larger batch."),)


def random_adapter(model: object, folder: Path, seed: int) -> Path:
    """A LoRA as the trainer shapes it (r=16, alpha=32, q/k/v/o) with small random weights."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj"]
    config = LoraConfig(r=16, lora_alpha=32, target_modules=targets, init_lora_weights=False)
    peft = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_B" in name:
                param.mul_(0.05)
    peft.save_pretrained(folder)
    peft.unload()
    return folder


def run(generator: object, adapter: tuple[str, Path] | None, new_tokens: int) -> dict:
    """Tokens/s over all questions (after one warm-up answer)."""
    from adaptune.generate import Request

    version, path = adapter if adapter else (None, None)
    asks = [Request(q, CONTEXT, None, version, path, max_new_tokens=new_tokens) for q in QUESTIONS]
    generator.generate(asks[0])  # type: ignore[attr-defined]
    answers = [generator.generate(r) for r in asks]  # type: ignore[attr-defined]
    tokens = sum(a.tokens for a in answers)
    seconds = sum(a.seconds for a in answers)
    return {
        "answers": len(answers),
        "tokens": tokens,
        "seconds": round(seconds, 3),
        "tokens_per_s": round(tokens / seconds, 1),
        "first_answer": answers[0].text[:120],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--adapter", type=Path, help="a PEFT adapter of the default model")
    args = parser.parse_args()

    import torch

    from adaptune.generate.llamacpp import LlamaCppGenerator, default_gguf
    from adaptune.generate.local import LocalGenerator
    from adaptune.train.model import load_base

    torch.set_num_threads(args.threads)
    model, tok, _ = load_base(None, HOME)
    with tempfile.TemporaryDirectory() as tmp:
        first = args.adapter or random_adapter(model, Path(tmp) / "a", 1)
        second = random_adapter(model, Path(tmp) / "b", 2)
        hf = LocalGenerator(model, tok, home=Path(tmp))
        started = time.perf_counter()
        fast = LlamaCppGenerator(home=Path(tmp), tokenizer=tok, n_threads=args.threads)
        fast.load()
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        fast.preload("a", first)
        convert_s = time.perf_counter() - started
        fast.preload("b", second)
        results = {
            "transformers": {
                "base": run(hf, None, args.new_tokens),
                "adapter": run(hf, ("a", first), args.new_tokens),
            },
            "llamacpp": {
                "base": run(fast, None, args.new_tokens),
                "adapter": run(fast, ("a", first), args.new_tokens),
            },
        }
        swaps = []
        for version, path in [("b", second), ("a", first)] * 5:
            started = time.perf_counter()
            fast._use(version, path)  # the switch alone, without generating
            swaps.append(time.perf_counter() - started)
    speedup = {
        kind: round(
            results["llamacpp"][kind]["tokens_per_s"]
            / results["transformers"][kind]["tokens_per_s"],
            2,
        )
        for kind in ("base", "adapter")
    }
    out = {
        "bench": "generation",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "threads": args.threads, "python": sys.version[:6]},
        "platform": platform.platform(),
        "model": str(default_gguf().name),
        "baseline": "transformers",
        "new_tokens": args.new_tokens,
        "results": results,
        "speedup_llamacpp_over_transformers": speedup,
        "llamacpp_load_s": round(load_s, 2),
        "adapter_convert_and_load_s": round(convert_s, 2),
        "adapter_switch_ms_max": round(max(swaps) * 1000, 2),
    }
    path = ROOT / "bench" / "results" / "generation.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    for engine, rows in results.items():
        for kind, row in rows.items():
            print(
                f"{engine:12} {kind:8} {row['tokens_per_s']:7.1f} tokens/s  ({row['tokens']} tok)"
            )
    print(f"speedup {speedup}; llama.cpp load {load_s:.2f} s; written to {path}")


if __name__ == "__main__":
    main()
