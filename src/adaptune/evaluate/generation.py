"""How close generated answers come to the real fix; the retrieval-only baseline.

The answers come from :mod:`adaptune.generate` (greedy, from the same chat prompt as training
and the service). Quality is ROUGE-L (longest common word subsequence) and the cosine of
sentence embeddings against the reference fix. The retrieval baseline answers each held-out
issue with the fix of the most similar earlier training issue: an adapter must beat it to claim
knowledge beyond the similar-issue memory.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from adaptune.memory.embed import Embedder
from adaptune.memory.index import SimilarIndex
from adaptune.types import Example

WORD = re.compile(r"\w+")


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
