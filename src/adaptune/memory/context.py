"""Retrieved context for training and evaluation examples ("train as it will serve").

Each qa example gets the ``k`` most similar *resolved, trained-on* issues with their fixes, taken
only from training examples whose answer was known no later than the example's own, and never
the example itself: the model learns to use the memory, not to recite, and never sees the future.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from adaptune.memory.embed import Embedder, default_embedder
from adaptune.memory.index import SimilarIndex
from adaptune.types import Example

FIX_CHARS = 600
"""Characters of each retrieved fix put in the prompt."""


def _title(ex: Example) -> str:
    return str(ex.meta.get("title") or ex.question.split("\n", 1)[0].removeprefix("Title: "))


def memory_index(examples: Sequence[Example], embedder: Embedder | None = None) -> SimilarIndex:
    """An index over the training qa examples: key = example id, payload = (title, fix)."""
    train = [e for e in examples if e.task == "qa" and e.split == "train"]
    index = SimilarIndex(embedder or default_embedder())
    index.add(
        [e.id for e in train],
        [e.question for e in train],
        [e.known_at for e in train],
        [(_title(e), e.answer[:FIX_CHARS]) for e in train],
    )
    return index


def with_context(examples: Sequence[Example], index: SimilarIndex, k: int = 2) -> list[Example]:
    """The examples with ``meta["context"]``: ``k`` earlier similar issues and their fixes."""
    hits = index.search(
        [e.question for e in examples],
        k=k,
        before=[e.known_at for e in examples],
        exclude=[{e.id} for e in examples],
    )
    out = []
    for ex, found in zip(examples, hits, strict=True):
        context = [list(h.payload) for h in found]
        out.append(
            replace(ex, meta={**ex.meta, "context": context, "context_ids": [h.key for h in found]})
        )
    return out
