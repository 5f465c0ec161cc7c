"""Generated answers and how close they come to the real fix; the retrieval-only baseline.

Generation is greedy (deterministic) from the same chat prompt as training, batched with left
padding. Quality is ROUGE-L (longest common word subsequence) and the cosine of sentence
embeddings against the reference fix. The retrieval baseline answers each held-out issue with
the fix of the most similar earlier training issue: an adapter must beat it to claim knowledge
beyond the similar-issue memory.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from adaptune.evaluate.scoring import (
    answer_target,
    evaluating,
    example_context,
    example_signature,
    prompt_ids,
)
from adaptune.memory.embed import Embedder
from adaptune.memory.index import SimilarIndex
from adaptune.train.format import IGNORE
from adaptune.types import Example

WORD = re.compile(r"\w+")


def generate_answers(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    max_new_tokens: int = 96,
    context: bool = True,
    batch_size: int = 8,
    max_len: int = 1024,
) -> list[str]:
    """Greedy answers to the examples' questions, in order (special tokens removed).

    ``context=True`` puts each example's ``meta["context"]`` in the prompt; prompts are cut to
    ``max_len − max_new_tokens`` tokens the way training cuts them.
    """
    from transformers import GenerationConfig

    prompts = [
        prompt_ids(
            tokenizer,
            ex.question,
            example_context(ex) if context else (),
            example_signature(ex),
            max_len - max_new_tokens,
        )
        for ex in examples
    ]
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=stop_ids(tokenizer),
    )
    out: list[str] = []
    with evaluating(model) as lm:
        for start in range(0, len(prompts), batch_size):
            ids, mask = _left_pad(prompts[start : start + batch_size], tokenizer.pad_token_id)
            ids, mask = ids.to(lm.device), mask.to(lm.device)
            new = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
            texts = tokenizer.batch_decode(new[:, ids.shape[1] :], skip_special_tokens=True)
            out.extend(t.strip() for t in texts)
    return out


def stop_ids(tokenizer: Any) -> list[int]:
    """The token that ends an assistant turn in the chat template, and the eos token."""
    target = answer_target(tokenizer, "x")
    turn_end = [i for i, label in zip(target.ids, target.labels, strict=True) if label != IGNORE][
        -1
    ]
    if tokenizer.eos_token_id is None:
        return [turn_end]
    return list(dict.fromkeys([turn_end, tokenizer.eos_token_id]))


def _left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, row in enumerate(rows):
        ids[b, width - len(row) :] = torch.tensor(list(row))
        mask[b, width - len(row) :] = 1
    return ids, mask


def rouge_l(pred: str, ref: str) -> float:
    """ROUGE-L F1: LCS of lower-cased word tokens over both lengths (0.0 if either is empty)."""
    a, b = WORD.findall(pred.lower()), WORD.findall(ref.lower())
    if not a or not b:
        return 0.0
    lcs = _lcs(a, b)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(a), lcs / len(b)
    return 2 * precision * recall / (precision + recall)


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (one row of the DP table at a time)."""
    prev = [0] * (len(b) + 1)
    for x in a:
        row = [0]
        for j, y in enumerate(b):
            row.append(prev[j] + 1 if x == y else max(prev[j + 1], row[j]))
        prev = row
    return prev[-1]


def embedding_similarity(
    preds: Sequence[str], refs: Sequence[str], embedder: Embedder
) -> np.ndarray:
    """Per-pair cosine similarity of the unit sentence vectors of ``preds[i]`` and ``refs[i]``."""
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions for {len(refs)} references")
    if not preds:
        return np.zeros(0)
    return np.sum(embedder.encode(preds) * embedder.encode(refs), axis=1).astype(float)


def retrieval_baseline(
    train_examples: Sequence[Example], heldout_examples: Sequence[Example], embedder: Embedder
) -> list[str]:
    """Each held-out question answered with the fix of its most similar training question.

    Only training examples whose answer was known no later than the held-out one's count (and
    never the held-out example itself); an issue with none gets ``""``.
    """
    index = SimilarIndex(embedder)
    index.add(
        [e.id for e in train_examples],
        [e.question for e in train_examples],
        [e.known_at for e in train_examples],
        [e.answer for e in train_examples],
    )
    hits = index.search(
        [e.question for e in heldout_examples],
        k=1,
        before=[e.known_at for e in heldout_examples],
        exclude=[{e.id} for e in heldout_examples],
    )
    return [found[0].payload if found else "" for found in hits]
