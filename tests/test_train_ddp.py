"""Under torchrun (two CPU processes, gloo) the trainer computes what one process computes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from adaptune.train import TrainConfig, train
from tiny_model import example, one_thread, tiny_model, tiny_tokenizer

RUNNER = """
import json, sys
from pathlib import Path

import torch
import torch.distributed as dist

torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from test_train_ddp import EXAMPLES, config
from tiny_model import tiny_model, tiny_tokenizer
from adaptune.train import train

dist.init_process_group("gloo")
tok = tiny_tokenizer()
out = Path(sys.argv[1])
result = train(EXAMPLES, config(batch_size=1), out, model=tiny_model(tok), tokenizer=tok)
if dist.get_rank() == 0:
    (out / "run.json").write_text(json.dumps(result.losses))
dist.destroy_process_group()
"""

EXAMPLES = [example(i) for i in range(12)]


def config(batch_size: int) -> TrainConfig:
    """No dropout: each process draws its own masks, so only the arithmetic is compared."""
    return TrainConfig(
        strategy="from-base",
        max_steps=5,
        batch_size=batch_size,
        grad_accum=2,
        max_len=256,
        lr=1e-2,
        lora_dropout=0.0,
        checkpoint_every=2,
    )


def test_two_processes_match_one_with_twice_the_batch(tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text(RUNNER.format(tests=str(Path(__file__).parent)))
    runner = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run(
        [*runner, str(script), str(tmp_path / "ddp")], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with one_thread():
        tok = tiny_tokenizer()
        single = train(
            EXAMPLES, config(batch_size=2), tmp_path / "one", model=tiny_model(tok), tokenizer=tok
        )
    losses = json.loads((tmp_path / "ddp" / "run.json").read_text())
    assert losses == pytest.approx(single.losses, abs=1e-5)
    assert (tmp_path / "ddp" / "adapter" / "adapter_model.safetensors").exists()
    assert (tmp_path / "ddp" / "checkpoints" / "step-000004" / "checkpoint.json").exists()
