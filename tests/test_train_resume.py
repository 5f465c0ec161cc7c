"""A run killed with SIGKILL and resumed ends bit-identical to one never interrupted."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from adaptune.train import TrainConfig, train
from tiny_model import example, one_thread, save_tiny

RUNNER = """
import json, sys, time
from pathlib import Path

import torch

torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from test_train_resume import EXAMPLES, config
from adaptune.train import train

out, delay, mode, model = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
steps = []


def progress(p):
    steps.append(p.step)
    time.sleep(delay)


result = train(EXAMPLES, config(model), out, progress=progress, resume=mode == "resume")
(out / "run.json").write_text(json.dumps({{"losses": result.losses, "steps": steps}}))
"""


def config(model: str) -> TrainConfig:
    """Dropout on, accumulation on: everything that could drift after a resume."""
    return TrainConfig(
        strategy="from-base",
        model=model,
        max_steps=16,
        checkpoint_every=4,
        batch_size=2,
        grad_accum=2,
        max_len=256,
        lr=1e-2,
        seed=7,
    )


EXAMPLES = [example(i) for i in range(12)]


def start(script: Path, out: Path, delay: float, mode: str, model: Path) -> subprocess.Popen:
    args = [sys.executable, str(script), str(out), str(delay), mode, str(model)]
    with (out.parent / f"{out.name}-{mode}.log").open("w") as log:
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)


def finish(process: subprocess.Popen, out: Path, mode: str) -> None:
    code = process.wait(timeout=180)
    assert code == 0, (out.parent / f"{out.name}-{mode}.log").read_text()[-3000:]


def test_sigkill_then_resume_gives_identical_adapter_weights(tmp_path: Path) -> None:
    model = save_tiny(tmp_path / "tiny")
    script = tmp_path / "run.py"
    script.write_text(RUNNER.format(tests=str(Path(__file__).parent)))
    victim_out = tmp_path / "victim"
    victim = start(script, victim_out, 0.3, "fresh", model)
    with one_thread():  # the uninterrupted run, meanwhile, in this process
        reference = train(EXAMPLES, config(str(model)), tmp_path / "reference")
    marker = victim_out / "checkpoints" / "step-000004" / "checkpoint.json"
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert victim.poll() is None, (tmp_path / "victim-fresh.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    victim.kill()  # SIGKILL: no cleanup, no atexit, no flush
    victim.wait()
    assert not (victim_out / "adapter").exists()
    finish(start(script, victim_out, 0.0, "resume", model), victim_out, "resume")
    want = load_file(str(reference.adapter_dir / "adapter_model.safetensors"))
    got = load_file(str(victim_out / "adapter" / "adapter_model.safetensors"))
    assert want.keys() == got.keys() and want
    assert all(torch.equal(want[name], got[name]) for name in want)
    run = json.loads((victim_out / "run.json").read_text())
    assert run["steps"][0] in (5, 9)  # it resumed from a checkpoint, not from scratch
    assert run["losses"] == reference.losses and len(reference.losses) == 16
