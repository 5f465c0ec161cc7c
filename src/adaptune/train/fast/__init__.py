"""CPU speed-ups of training, swapped into a model for the length of a run: :func:`accelerate`.

None of them changes what a step computes, only how: the same sums, rounded differently in bf16.
The trainer enters :func:`accelerate` once per run; ``TrainConfig(fast=False)`` turns them all
off and ``ADAPTUNE_NATIVE_KERNELS=0`` the compiled kernels only. Reading order:

- :mod:`~adaptune.train.fast.attention`: packed rows attended one example at a time (an
  attention implementation registered with transformers), no row-wide mask;
- :mod:`~adaptune.train.fast.blocked`: that attention in bf16 on a CPU as blocked batched
  multiplies that skip the masked half; :mod:`~adaptune.train.fast.native`: the same as one
  compiled AVX-512 BF16 kernel per example;
- :mod:`~adaptune.train.fast.rope_attention`: attention layers that hand the rotary embedding to
  that kernel;
- :mod:`~adaptune.train.fast.mlp` and :mod:`~adaptune.train.fast.norm`: frozen MLPs and RMSNorms
  with leaner backward passes; :mod:`~adaptune.train.fast.fused`: their one-pass compiled kernels;
- :mod:`~adaptune.train.fast.swap`: the class swap the last three use;
  :mod:`~adaptune.train.fast.compiled`: building and loading ``kernels/*.c``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from adaptune.train.config import TrainConfig
from adaptune.train.fast.attention import packed_attention
from adaptune.train.fast.mlp import frozen_mlps
from adaptune.train.fast.norm import frozen_norms
from adaptune.train.fast.rope_attention import rope_in_kernel
from adaptune.train.loss import causal_lm

__all__ = ["accelerate"]


@contextmanager
def accelerate(model: nn.Module, config: TrainConfig) -> Iterator[dict[str, int]]:
    """Inside, ``model`` (a PEFT model) trains with every speed-up of this package when
    ``config.fast``, as it is otherwise; yields how many modules each one switched (empty when
    off). All is undone on exit, also when the run inside fails.

    The order is kept: packed attention first, since the rotary swap checks each layer class on
    the packed path; then the attention layers, the MLPs and the norms."""
    if not config.fast:
        yield {}
        return
    with (
        packed_attention(causal_lm(model)) as attention,
        rope_in_kernel(model) as rope,
        frozen_mlps(model) as mlps,
        frozen_norms(model) as norms,
    ):
        yield {"attention": int(attention), "rope": rope, "mlps": mlps, "norms": norms}
