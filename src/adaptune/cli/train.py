"""``adaptune train``: one training iteration of a domain, registered as a new adapter version."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from adaptune.cli.options import Opt, config_options
from adaptune.cli.output import err, out, print_json
from adaptune.config import TrainConfig
from adaptune.store import open_store
from adaptune.track import check_kind, log_version, step_logger, tracking

if TYPE_CHECKING:
    from adaptune.train.loop import Progress as TrainProgress


@contextmanager
def _bar() -> Iterator[Callable[[TrainProgress], None]]:
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

        def update(p: TrainProgress) -> None:
            bar.update(task, completed=p.step, total=p.total_steps, loss=p.loss, tps=p.tokens_per_s)

        yield update


def _init_distributed() -> None:
    """Join the process group when started by torchrun / accelerate launch (WORLD_SIZE > 1)."""
    import os

    import torch
    from torch import distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


TRAIN_OPTIONS: tuple[Opt | str, ...] = (
    Opt("strategy"),
    Opt("window", help="Window name or 1-based index."),
    Opt("max_steps"),
    Opt("epochs"),
    Opt("model"),
    "resume",
    "context",
    "parent",
    Opt("replay_share", "--replay"),
    Opt("lr"),
    Opt("batch_size"),
    Opt("max_len"),
    Opt("target"),
    Opt("grad_accum"),
    Opt("forward_tokens", help="Most tokens per forward pass (memory); 0: no limit."),
    Opt("grad_checkpointing"),
    Opt("release_memory"),
    Opt("precision"),
    Opt("checkpoint_every"),
    Opt("seed"),
)
"""The TrainConfig settings ``adaptune train`` offers, in the order of its help; a string places
one of the command's own options."""


@config_options(TrainConfig, TRAIN_OPTIONS)
def train(
    settings: dict[str, Any],
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint."),
    context: str = typer.Option("retrieved", "--context", help="retrieved or none."),
    parent: str | None = typer.Option(None, "--from", help="Parent adapter: [DOMAIN:]VERSION."),
    domain: str | None = typer.Option(None, "--domain", help="Domain (default: the only one)."),
    as_json: bool = typer.Option(False, "--json", help="Print the new version as JSON."),
    track: str | None = typer.Option(None, "--track", help="Log the run to: mlflow."),
) -> None:
    """Train a LoRA adapter on one window (from the previous adapter with replay, by default)."""
    from transformers.utils import logging as hf_logging

    from adaptune.pipeline import plan, run_iteration

    check_kind(track)
    hf_logging.disable_progress_bar()  # our own bar says what is happening
    _init_distributed()
    store = open_store()
    strategy = settings["strategy"]
    the_plan = plan(store, domain, strategy, settings["window"], context, parent)
    config = TrainConfig(
        **{
            **settings,
            "window": the_plan.window,
            "forward_tokens": settings["forward_tokens"] or None,
        }
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
