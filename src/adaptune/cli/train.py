"""``adaptune train``: one training iteration of a domain, registered as a new adapter version."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from adaptune.cli.output import err, out, print_json


@contextmanager
def _bar() -> Iterator[Callable[[Any], None]]:
    """A rich progress bar fed by the trainer's per-step callback."""
    columns = (
        TextColumn("[bold]train[/]"),
        BarColumn(),
        TextColumn("step {task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TextColumn("{task.fields[tps]:.0f} tok/s"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task("train", total=None, loss=float("nan"), tps=0.0)

        def update(p: Any) -> None:
            bar.update(task, completed=p.step, total=p.total_steps, loss=p.loss, tps=p.tokens_per_s)

        yield update


def _init_distributed() -> None:
    """Join the process group when started by torchrun / accelerate launch (WORLD_SIZE > 1)."""
    import os

    import torch
    from torch import distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def train(
    strategy: str = typer.Option("adaptive", "--strategy", help="adaptive, from-base, cumulative."),
    window: str | None = typer.Option(None, "--window", help="Window name or 1-based index."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Stop after N steps."),
    epochs: float = typer.Option(1.0, "--epochs", help="Passes over the selected examples."),
    model: str | None = typer.Option(None, "--model", help="Base model path (default SmolLM2)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint."),
    context: str = typer.Option("retrieved", "--context", help="retrieved or none."),
    parent: str | None = typer.Option(None, "--from", help="Parent adapter: [DOMAIN:]VERSION."),
    replay: float = typer.Option(0.25, "--replay", help="Replay share (adaptive)."),
    lr: float = typer.Option(2e-4, "--lr", help="Peak learning rate."),
    batch_size: int = typer.Option(4, "--batch-size", help="Packed rows per step."),
    max_len: int = typer.Option(1024, "--max-len", help="Tokens per packed row."),
    target: str = typer.Option("attention", "--target", help="attention or all-linear."),
    grad_accum: int = typer.Option(1, "--grad-accum", help="Steps of gradient accumulation."),
    forward_tokens: int = typer.Option(
        1024, "--forward-tokens", help="Most tokens per forward pass (memory); 0: no limit."
    ),
    grad_checkpointing: bool = typer.Option(
        False, "--grad-checkpointing", help="Recompute activations to save memory."
    ),
    release_memory: bool = typer.Option(
        False, "--release-memory", help="Give freed activations back at once (flat RSS, slower)."
    ),
    precision: str = typer.Option(
        "auto", "--precision", help="auto (bf16 where the CPU/GPU has it natively), fp32 or bf16."
    ),
    checkpoint_every: int = typer.Option(50, "--checkpoint-every", help="Checkpoint each N steps."),
    seed: int = typer.Option(0, "--seed", help="Random seed (runs are deterministic)."),
    domain: str | None = typer.Option(None, "--domain", help="Domain (default: the only one)."),
    as_json: bool = typer.Option(False, "--json", help="Print the new version as JSON."),
    track: str | None = typer.Option(None, "--track", help="Log the run to: mlflow."),
) -> None:
    """Train a LoRA adapter on one window (from the previous adapter with replay, by default)."""
    from transformers.utils import logging as hf_logging

    from adaptune.pipeline import plan, run_iteration
    from adaptune.store import open_store
    from adaptune.track import check_kind, log_version, step_logger, tracking
    from adaptune.train import TrainConfig

    check_kind(track)
    hf_logging.disable_progress_bar()  # our own bar says what is happening
    _init_distributed()
    store = open_store()
    the_plan = plan(store, domain, strategy, window, context, parent)
    config = TrainConfig(
        strategy=strategy,
        window=the_plan.window,
        max_steps=max_steps,
        epochs=epochs,
        model=model,
        replay_share=replay,
        lr=lr,
        batch_size=batch_size,
        max_len=max_len,
        target=target,
        grad_accum=grad_accum,
        forward_tokens=forward_tokens or None,
        grad_checkpointing=grad_checkpointing,
        release_memory=release_memory,
        precision=precision,
        checkpoint_every=checkpoint_every,
        seed=seed,
    )
    start = the_plan.parent.version if the_plan.parent else "the base model"
    err.print(escape(f"{the_plan.domain}: {strategy} on window {the_plan.window} from {start}"))
    named = f"{the_plan.window} {strategy}"
    with tracking(track, the_plan.domain, named, store.settings.home) as run, _bar() as update:
        run.log_params({**config.to_dict(), "context": context, "parent": start})
        version = run_iteration(
            store, the_plan, config, resume=resume, progress=step_logger(run, update)
        )
        if version is not None:
            log_version(run, version)
    if version is None:  # another rank of a distributed run registers the adapter
        return
    if as_json:
        print_json(
            {
                "version": version.version,
                "parent": version.parent,
                "window": version.window,
                "cost": version.cost,
            }
        )
        return
    cost = version.cost
    out.print(
        f"[green]{version.version}[/] registered: {cost.get('examples')} examples, "
        f"{cost.get('tokens')} tokens in {cost.get('seconds')} s "
        f"({cost.get('tokens_per_s')} tok/s)"
    )
