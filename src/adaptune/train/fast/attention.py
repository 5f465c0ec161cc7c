"""Attention over packed rows that computes each example on its own: causal SDPA per example.

With packing (:mod:`~adaptune.train.packing`), transformers' ``sdpa`` builds a block-diagonal
causal mask over the whole row and the kernel computes every score of the row, most of them
masked: for a 1,024-token row of two examples that is about four times the work of attending
within each example, and a boolean ``L × L`` mask per row besides. On a CPU that was a third of
a SmolLM2-135M training step (``bench/train_profile.py`` measures it).

:data:`NAME` is an attention implementation registered with transformers' ``AttentionInterface``
(and its mask interface) that splits each row where its ``position_ids`` restart at 0 and runs
``scaled_dot_product_attention(is_causal=True)`` on each example alone: the same result, no mask,
and only the causal half of each example's scores. Anything else (a padding mask, a KV cache,
positions that are not runs of ``0, 1, …``) goes to transformers' own ``sdpa`` unchanged, so the
implementation is safe to leave on for evaluation and generation. Where the attention computes
in bf16 on a CPU (bf16 autocast in training, :mod:`~adaptune.train.precision`), each example goes
to :func:`adaptune.train.fast.native.causal_attention` instead where the CPU has AVX-512 BF16 and
the heads have 64 dimensions (one compiled kernel per example), else to
:func:`adaptune.train.fast.blocked.causal_attention`; both skip the masked half too and run faster
than the flash kernel (``bench/attention_kernel.py``).
:func:`packed_attention` switches a model to it for the length of a training run. It relies
on the model handing ``position_ids`` to its attention function, as transformers' Llama-style
decoders do; one that does not would attend across examples, which the trainer's packing check
(:func:`adaptune.train.packing.isolates`, run with this implementation on) catches: such a model
trains one example per row.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
from torch.nn import functional as F

import adaptune.train.fast.native as native
from adaptune.train.fast.blocked import causal_attention

NAME = "adaptune_packed"
"""The attention implementation's registered name."""
_LAST: dict[str, Any] = {}
"""The last ``position_ids`` seen and their segments: every layer of a forward pass asks."""


def segments(position_ids: torch.Tensor) -> list[list[int]] | None:
    """Per row, the lengths of its examples (runs of positions ``0, 1, …``); ``None`` otherwise."""
    if position_ids.dim() != 2:
        return None
    starts = position_ids == 0
    if not bool(starts[:, 0].all()):
        return None
    steps = position_ids[:, 1:] - position_ids[:, :-1]
    if not bool(((steps == 1) | starts[:, 1:]).all()):
        return None
    width = position_ids.shape[1]
    out = []
    for row in starts:
        begin = row.nonzero().flatten().tolist()
        out.append([b - a for a, b in zip(begin, [*begin[1:], width], strict=True)])
    return out


def _segments_once(position_ids: torch.Tensor, batch: int) -> list[list[int]] | None:
    """:func:`segments` of ``batch`` rows, worked out once per tensor (not once per layer)."""
    seen, key = _LAST.get("ids"), (position_ids._version, batch)
    if seen is not None and seen() is position_ids and _LAST["key"] == key:
        return _LAST["lengths"]
    lengths = segments(position_ids.expand(batch, -1))
    _LAST.update(ids=weakref.ref(position_ids), key=key, lengths=lengths)
    return lengths


def packed_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: ``(batch, seq, heads, head_dim)`` out."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    position_ids = kwargs.get("position_ids")
    same_length = query.shape[2] == key.shape[2]
    lengths = None
    if attention_mask is None and position_ids is not None and same_length:
        lengths = _segments_once(position_ids, query.shape[0])
    if lengths is None or kwargs.get("softcap") is not None or kwargs.get("sliding_window"):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout, scaling, **kwargs
        )
    if _blocked_bf16(query, dropout):
        kernel = native.causal_attention if native.available(query.shape[-1]) else causal_attention
        blocked = partial(kernel, scale=scaling)
        return _per_example(blocked, query, key, value, lengths), None
    groups = query.shape[1] // key.shape[1]
    if groups > 1:  # measured: faster on the CPU kernel than enable_gqa
        key, value = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)

    def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = F.scaled_dot_product_attention(
            q[None], k[None], v[None], dropout_p=dropout, is_causal=True, scale=scaling
        )
        return out[0].transpose(0, 1)

    return _per_example(sdpa, query, key, value, lengths), None


def _blocked_bf16(query: torch.Tensor, dropout: float) -> bool:
    """Whether this attention computes in bf16 on a CPU (bf16 inputs, or bf16 autocast) with no
    dropout: then :func:`~adaptune.train.fast.blocked.causal_attention` is the faster kernel."""
    if query.device.type != "cpu" or dropout:
        return False
    if query.dtype == torch.bfloat16:
        return True
    return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def _per_example(
    attend: Callable[..., torch.Tensor],
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    lengths: list[list[int]],
    rope: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """``attend(q, k, v)`` (``(heads, L, d)`` in, ``(L, heads, d)`` out) on each example of each
    row alone; the rows back as ``(batch, seq, heads, head_dim)``. With ``rope=(cos, sin)``
    (``(batch or 1, seq, head_dim)``) each call also gets its example's rows of them as
    ``rope=``."""
    rows = []
    for b, parts in enumerate(lengths):
        pieces = zip(
            query[b].split(parts, 1), key[b].split(parts, 1), value[b].split(parts, 1), strict=True
        )
        if rope is None:
            outs = [attend(q, k, v) for q, k, v in pieces]
        else:
            cos, sin = (t[b if t.shape[0] > 1 else 0].split(parts) for t in rope)
            outs = [attend(*qkv, rope=cs) for qkv, *cs in zip(pieces, cos, sin, strict=True)]
        rows.append(torch.cat(outs) if len(outs) > 1 else outs[0])
    return torch.stack(rows) if len(rows) > 1 else rows[0][None]


def _mask(**kwargs: Any) -> torch.Tensor | None:
    """No mask where :func:`packed_attention_forward` needs none; ``sdpa``'s mask otherwise."""
    from transformers.masking_utils import sdpa_mask

    plain = kwargs.get("attention_mask") is None and not kwargs.get("q_offset")
    if plain and kwargs.get("q_length") == kwargs.get("kv_length"):
        return None
    return sdpa_mask(**kwargs)


def register() -> None:
    """Make :data:`NAME` known to transformers (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, packed_attention_forward)
    AttentionMaskInterface.register(NAME, _mask)


@contextmanager
def packed_attention(lm: torch.nn.Module) -> Iterator[bool]:
    """Run ``lm`` (a transformers causal LM) with :data:`NAME` while inside; yields whether it
    switched (only models on ``sdpa`` are switched, and switched back on exit)."""
    config = getattr(lm, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) != "sdpa":
        yield False
        return
    register()
    config._attn_implementation = NAME
    try:
        yield True
    finally:
        config._attn_implementation = "sdpa"
