"""How well a model predicts a project's issue texts: a transfer measure that needs no answers.

Some trackers come without resolutions (the vLLM and llama.cpp dumps carry no pull requests and
no comment text), so the answer-based metrics cannot be computed there. What can be measured is
whether an adapter trained on one project changes how well the model predicts another project's
issues (the per-token NLL of the issue's own text, title first): lower than the base model's
means the adapter carried over something about the other project; higher means it narrowed
the model to its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from adaptune.evaluate.scoring import nll_rows, pad_rows
from adaptune.generate.local import evaluating

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def text_nll(
    model: PreTrainedModel | PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_len: int = 256,
    batch_size: int = 8,
) -> np.ndarray:
    """Per-text mean NLL of every token after the first (the first ``max_len`` tokens)."""
    rows = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][:max_len]
        if len(ids) >= 2:
            rows.append((tuple(ids), tuple(ids)))
    out = np.zeros(len(rows))
    if not rows:
        return out
    with evaluating(model) as lm:
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            sums, counts = nll_rows(lm, False, *pad_rows([rows[i] for i in chunk], 0, lm))
            out[chunk] = sums / counts
    return out
