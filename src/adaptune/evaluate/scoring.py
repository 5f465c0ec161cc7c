"""Teacher-forced answer likelihood: per-example answer NLL, and many answers after one prompt.

Every score here is the mean negative log-likelihood (nats per token) of the answer tokens that
:func:`adaptune.train.format.encode` labels (the answer and the end-of-turn token after it),
given the chat prompt, exactly what training minimises. Rows are right-padded with an attention
mask, so padding never changes a score; as in training the output layer runs only at answer
positions (see :mod:`adaptune.train.loss`), falling back to full logits for a model whose
logits are not its head's output.

:class:`Scorer` scores several candidate answers after one prompt. It runs the prompt once,
keeps its key/value cache and runs only the candidates' tokens on top of it, so a prompt of P
tokens and C candidates of A tokens cost P + C·A token-forwards instead of C·(P + A). It checks
once per run that this gives the same numbers as full rows and otherwise scores full rows.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.nn import functional as F

from adaptune.generate.local import evaluating
from adaptune.generate.prompt import Target, example_context, example_signature, split_prompt
from adaptune.train.format import IGNORE, Encoded, encode
from adaptune.train.loss import head_only_matches
from adaptune.types import Example

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import Cache, PreTrainedModel, PreTrainedTokenizerBase


def answer_nll(
    model: PreTrainedModel | PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    context: bool = True,
    max_len: int = 1024,
    batch_size: int = 8,
) -> np.ndarray:
    """Per-example mean NLL of the answer tokens, teacher-forced, in the examples' order.

    ``context=True`` puts each example's ``meta["context"]`` (retrieved similar fixes) in the
    prompt as training does; ``False`` leaves it out. Perplexity is :func:`perplexity`.
    """
    encoded = [
        encode(
            tokenizer,
            ex.question,
            ex.answer,
            example_context(ex) if context else (),
            example_signature(ex),
            max_len,
        )
        for ex in examples
    ]
    out = np.zeros(len(encoded))
    if not encoded:
        return out
    with evaluating(model) as lm:
        head_only = _head_only(model, lm, encoded[0])
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            rows = [(enc.input_ids, enc.labels) for enc in (encoded[i] for i in chunk)]
            sums, counts = nll_rows(lm, head_only, *pad_rows(rows, tokenizer.pad_token_id, lm))
            out[chunk] = sums / counts
    return out


def perplexity(nll: Sequence[float] | np.ndarray) -> float:
    """``exp`` of the mean per-example NLL (each example weighs the same)."""
    values = np.asarray(nll, dtype=float)
    return math.exp(float(values.mean())) if values.size else math.nan


def nll_rows(
    lm: PreTrainedModel,
    head_only: bool,
    ids: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor,
    past: Cache | None = None,
    positions: torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Summed answer NLL and answer-token count of each row (position t predicts label t+1)."""
    targets = labels[:, 1:]
    keep = targets != IGNORE
    body = lm.get_decoder() if head_only else lm
    kwargs: dict[str, torch.Tensor | Cache | bool | None] = {
        "input_ids": ids,
        "attention_mask": mask,
        "position_ids": positions,
    }
    kwargs["use_cache"] = past is not None
    if past is not None:  # extended in place: callers pass a copy
        kwargs[_cache_kwarg(body)] = past
    out = body(**kwargs)
    if head_only:
        logits = lm.get_output_embeddings()(out.last_hidden_state[:, :-1][keep])
    else:
        logits = out.logits[:, :-1][keep]
    nll = F.cross_entropy(logits.float(), targets[keep], reduction="none").double()
    sums = torch.zeros(len(ids), dtype=torch.float64, device=nll.device)
    sums.index_add_(0, keep.nonzero()[:, 0], nll)
    return sums.cpu().numpy(), keep.sum(dim=1).cpu().numpy()


def pad_rows(
    rows: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int, lm: PreTrainedModel
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, labels and attention mask on the model's device."""
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, (row_ids, row_labels) in enumerate(rows):
        ids[b, : len(row_ids)] = torch.tensor(row_ids)
        labels[b, : len(row_labels)] = torch.tensor(row_labels)
        mask[b, : len(row_ids)] = 1
    on = lm.device
    return ids.to(on), labels.to(on), mask.to(on)


def _head_only(model: torch.nn.Module, lm: PreTrainedModel, encoded: Encoded) -> bool:
    ids = torch.tensor([encoded.input_ids], device=lm.device)
    labels = torch.tensor([encoded.labels], device=lm.device)
    return head_only_matches(model, ids, labels)


@dataclass(frozen=True, slots=True)
class Scorer:
    """Scores candidate answers after a prompt, sharing the prompt's cache when that is exact.

    Make one with :meth:`build` inside :func:`~adaptune.generate.local.evaluating`.
    """

    lm: PreTrainedModel
    head_only: bool
    share_prefix: bool
    pad_id: int
    batch_size: int

    @classmethod
    def build(
        cls,
        model: torch.nn.Module,
        lm: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        batch_size: int,
        probe: Encoded,
    ) -> Scorer:
        """A scorer for ``lm``; ``probe`` (an encoded example) checks the two shortcuts."""
        head_only = _head_only(model, lm, probe)
        full = cls(lm, head_only, False, tokenizer.pad_token_id, batch_size)
        prompt, target = split_prompt(probe)
        try:
            shared = cls(lm, head_only, True, tokenizer.pad_token_id, batch_size)
            got, want = shared.nll(prompt, [target])[0], full.nll(prompt, [target])[0]
        except (AttributeError, NotImplementedError, TypeError, ValueError):  # no usable cache
            return full
        tol = 1e-4 if lm.dtype == torch.float32 else 2e-2
        return shared if math.isclose(got, want, rel_tol=tol, abs_tol=tol) else full

    def nll(self, prompt: Sequence[int], targets: Sequence[Target]) -> np.ndarray:
        """Mean answer NLL of each target after ``prompt`` (at least two prompt tokens)."""
        out = np.zeros(len(targets))
        order = sorted(range(len(targets)), key=lambda i: -len(targets[i].ids))
        past = self._prefix(prompt[:-1]) if self.share_prefix else None
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            picked = [targets[i] for i in chunk]
            sums, counts = self._rows(prompt, picked, past)
            out[chunk] = sums / counts
        return out

    def _rows(
        self, prompt: Sequence[int], targets: Sequence[Target], past: Cache | None
    ) -> tuple[np.ndarray, np.ndarray]:
        if past is None:
            rows = [((*prompt, *t.ids), (IGNORE,) * len(prompt) + t.labels) for t in targets]
            return nll_rows(self.lm, self.head_only, *pad_rows(rows, self.pad_id, self.lm))
        # The prompt's last token is run again with each candidate, so that position t of a
        # row still predicts label t + 1 (its output predicts the answer's first token).
        rows = [((prompt[-1], *t.ids), (IGNORE, *t.labels)) for t in targets]
        ids, labels, mask = pad_rows(rows, self.pad_id, self.lm)
        cache = copy.deepcopy(past)
        cache.batch_repeat_interleave(len(targets))
        before = len(prompt) - 1
        full_mask = torch.cat([mask.new_ones((len(targets), before)), mask], dim=1)
        positions = torch.arange(before, before + ids.shape[1], device=ids.device)
        positions = positions.unsqueeze(0).expand(len(targets), -1)
        return nll_rows(self.lm, self.head_only, ids, labels, full_mask, cache, positions)

    def _prefix(self, ids: Sequence[int]) -> Cache:
        batch = torch.tensor([list(ids)], device=self.lm.device)
        body = self.lm.get_decoder() if self.head_only else self.lm
        out = body(input_ids=batch, use_cache=True)
        cache = getattr(out, "cache", None)
        return out.past_key_values if cache is None else cache


def _cache_kwarg(module: torch.nn.Module) -> str:
    """``cache`` (transformers ≥ 5.24) or ``past_key_values`` (older releases)."""
    params = inspect.signature(module.forward).parameters
    return "cache" if "cache" in params else "past_key_values"
