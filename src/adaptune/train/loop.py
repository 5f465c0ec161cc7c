"""The training loop: AdamW, warm-up + cosine, accumulation, checkpoints, resume, DDP.

Everything a step does is a function of ``(seed, step)``: which rows it reads (a seeded
permutation per epoch) and its dropout masks (the generator is reseeded per step and process).
So a run resumed from a checkpoint computes exactly what the uninterrupted run would have.
Under ``torchrun`` / ``accelerate launch`` each process takes every ``world``-th row of a step
and DistributedDataParallel averages the gradients; the loss is divided by the whole step's
answer-token count, so the result does not depend on how rows fall across processes.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import distributed as dist

import adaptune.train.checkpoint as checkpoint
from adaptune.train.config import TrainConfig
from adaptune.train.loss import AnswerLoss, causal_lm
from adaptune.train.packing import Row, collate
from adaptune.train.precision import autocast

if TYPE_CHECKING:
    from torch.optim.lr_scheduler import LambdaLR, LRScheduler
    from transformers import PreTrainedModel


@dataclass(frozen=True, slots=True)
class Progress:
    """One optimizer step done, as the progress callback sees it."""

    step: int
    """Steps done so far (1-based)."""
    total_steps: int
    """Steps the run will take."""
    loss: float
    """Mean answer-token loss of this step."""
    tokens_per_s: float
    """Real (non-padding) tokens per second since this process started training."""
    eta_s: float
    """Estimated seconds left."""
    elapsed_s: float
    """Seconds of training so far, earlier sessions of a resumed run included."""


ProgressFn = Callable[[Progress], None]


@dataclass(slots=True)
class LoopState:
    """The loop's counters; saved in every checkpoint."""

    step: int = 0
    losses: list[float] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0


def world() -> tuple[int, int]:
    """``(rank, world_size)``: ``(0, 1)`` unless torch.distributed is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def total_steps(n_rows: int, config: TrainConfig, world_size: int = 1) -> int:
    """Optimizer steps of a run: ``max_steps``, or enough for ``epochs`` passes over the rows."""
    if config.max_steps is not None:
        return config.max_steps
    per_step = config.batch_size * config.grad_accum * world_size
    return max(1, math.ceil(config.epochs * n_rows / per_step))


def step_rows(step: int, n_rows: int, per_step: int, seed: int) -> list[int]:
    """Row indices of a 0-based step: a run reads one seeded permutation per epoch, in turn."""
    start = step * per_step
    perms: dict[int, list[int]] = {}
    out = []
    for pos in range(start, start + per_step):
        epoch = pos // n_rows
        if epoch not in perms:
            generator = torch.Generator().manual_seed(seed * 7919 + epoch)
            perms[epoch] = torch.randperm(n_rows, generator=generator).tolist()
        out.append(perms[epoch][pos % n_rows])
    return out


def run(
    model: torch.nn.Module,
    rows: Sequence[Row],
    config: TrainConfig,
    root: Path,
    run_hash: str,
    pad_id: int,
    progress: ProgressFn | None = None,
    resume: bool = False,
    head_only: bool = True,
) -> LoopState:
    """Train the trainable parameters of ``model`` on ``rows``; checkpoints go under ``root``."""
    rank, size = world()
    on = device()
    model.to(on)
    _set_checkpointing(causal_lm(model), config.grad_checkpointing)
    model.train()
    net = _wrap(AnswerLoss(model, head_only), size, on)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    total = total_steps(len(rows), config, size)
    scheduler = _schedule(optimizer, config, total)
    state = _start(root, model, optimizer, scheduler, run_hash, resume, rank)
    clock = _Clock(state.step, total, state.seconds)
    for step in range(state.step, total):
        loss, tokens = _step(net, optimizer, params, rows, step, config, pad_id, on)
        scheduler.step()
        state.step, state.tokens = step + 1, state.tokens + tokens
        state.losses.append(loss)
        if progress is not None and rank == 0:
            progress(clock.tick(step + 1, loss, tokens))
        every = config.checkpoint_every
        if every and (step + 1) % every == 0 and step + 1 < total:
            _save(root, model, optimizer, scheduler, state, run_hash, clock.elapsed(), rank)
    state.seconds += clock.elapsed()
    _set_checkpointing(causal_lm(model), False)
    return state


class _Clock:
    """Throughput and ETA of this session (a resumed run counts its earlier seconds too)."""

    def __init__(self, first: int, total: int, before: float) -> None:
        self.first, self.total, self.before = first, total, before
        self.started, self.tokens = time.perf_counter(), 0

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def tick(self, done: int, loss: float, tokens: int) -> Progress:
        self.tokens += tokens
        elapsed = max(self.elapsed(), 1e-9)
        eta = (self.total - done) * elapsed / (done - self.first)
        return Progress(done, self.total, loss, self.tokens / elapsed, eta, self.before + elapsed)


def _step(
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    params: list[torch.nn.Parameter],
    rows: Sequence[Row],
    step: int,
    config: TrainConfig,
    pad_id: int,
    device: torch.device,
) -> tuple[float, int]:
    """One optimizer step over ``batch_size × grad_accum`` rows per process."""
    rank, size = world()
    per_step = config.batch_size * config.grad_accum * size
    chosen = [rows[i] for i in step_rows(step, len(rows), per_step, config.seed)]
    denominator = max(sum(r.targets for r in chosen), 1)
    micro = forward_groups(chosen[rank::size], config.batch_size, config.forward_tokens)
    torch.manual_seed(config.seed * 1_000_003 + step * 101 + rank)  # dropout: f(seed, step)
    nll_sum = torch.zeros((), device=device)
    for k, batch in enumerate(micro):
        last = k == len(micro) - 1
        with net.no_sync() if size > 1 and not last else nullcontext():
            tensors = {name: t.to(device) for name, t in collate(batch, pad_id).items()}
            with autocast(config.precision, device):
                nll, _ = net(tensors["input_ids"], tensors["position_ids"], tensors["labels"])
            # DDP averages over processes; scale so the sum is over all the step's answer tokens.
            (nll * size / denominator).backward()
        nll_sum += nll.detach()
    if config.max_grad_norm:
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if size > 1:
        dist.all_reduce(nll_sum)
    return float(nll_sum) / denominator, sum(len(r) for r in chosen)


def forward_groups(
    rows: Sequence[Row], batch_size: int, forward_tokens: int | None
) -> list[list[Row]]:
    """A step's rows in forward passes: runs of ``batch_size`` rows, each cut further so that
    ``rows × longest row`` stays within ``forward_tokens`` (always at least one row)."""
    groups: list[list[Row]] = []
    for start in range(0, len(rows), batch_size):
        group: list[Row] = []
        for row in rows[start : start + batch_size]:
            width = max([len(row), *(len(r) for r in group)])
            if group and forward_tokens is not None and width * (len(group) + 1) > forward_tokens:
                groups.append(group)
                group = []
            group.append(row)
        groups.append(group)
    return groups


def _start(
    root: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
    run_hash: str,
    resume: bool,
    rank: int,
) -> LoopState:
    """Fresh counters, or the latest checkpoint's when resuming (a fresh run clears old ones)."""
    found = checkpoint.latest(root) if resume else None
    if found is None:
        if not resume and rank == 0 and root.exists():
            shutil.rmtree(root)
        _barrier()
        return LoopState()
    saved = checkpoint.load(found, model, run_hash)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    return LoopState(**saved["loop"])


def _save(
    root: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
    state: LoopState,
    run_hash: str,
    elapsed: float,
    rank: int,
) -> None:
    if rank == 0:
        loop = {
            "step": state.step,
            "losses": list(state.losses),
            "tokens": state.tokens,
            "seconds": state.seconds + elapsed,
        }
        payload: dict[str, Any] = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "loop": loop,
        }
        checkpoint.save(root, state.step, model, payload, run_hash)
    _barrier()


def _schedule(optimizer: torch.optim.Optimizer, config: TrainConfig, total: int) -> LambdaLR:
    from transformers import get_cosine_schedule_with_warmup

    warmup = round(config.warmup_ratio * total)
    return get_cosine_schedule_with_warmup(optimizer, warmup, total)


def _wrap(module: torch.nn.Module, size: int, device: torch.device) -> torch.nn.Module:
    if size == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def device() -> torch.device:
    if not torch.cuda.is_available():
        return torch.device("cpu")
    rank, size = world()
    index = int(os.environ.get("LOCAL_RANK", rank)) if size > 1 else 0
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def _set_checkpointing(lm: PreTrainedModel, enabled: bool) -> None:
    if hasattr(lm, "activation_checkpointing_enable"):  # the transformers 5 name
        if enabled:
            lm.activation_checkpointing_enable({"use_reentrant": False})
        elif lm.is_activation_checkpointing:
            lm.activation_checkpointing_disable()
    elif enabled:
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    elif lm.is_gradient_checkpointing:
        lm.gradient_checkpointing_disable()


def _barrier() -> None:
    if world()[1] > 1:
        dist.barrier()
