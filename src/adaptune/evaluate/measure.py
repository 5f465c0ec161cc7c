"""Measuring adapters: one base model in memory, each adapter put on it in turn.

:class:`Evaluator` is the stage's workhorse for the continual-learning matrix: answer NLL of the
base model or of any registered adapter on a set of held-out examples, with or without the
retrieved context, plus fix ranking; the base weights are loaded once and the adapter is
removed again after each measurement.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from adaptune.evaluate.ranking import RankingResult, fix_ranking
from adaptune.evaluate.scoring import answer_nll
from adaptune.types import Example


class Evaluator:
    """A base model and tokenizer, measured bare or with one adapter at a time."""

    def __init__(self, model: Any, tokenizer: Any, max_len: int = 1024) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_len = max_len

    @contextmanager
    def using(self, adapter: Path | None) -> Iterator[Any]:
        """The base model (``adapter=None``) or the base with ``adapter`` loaded, then removed."""
        if adapter is None:
            yield self.model
            return
        from peft import PeftModel

        peft_model = PeftModel.from_pretrained(self.model, str(adapter), is_trainable=False)
        try:
            yield peft_model
        finally:
            self.model = peft_model.unload()

    def nll(self, adapter: Path | None, examples: Sequence[Example], context: bool) -> np.ndarray:
        """Per-example answer NLL on ``examples``."""
        with self.using(adapter) as model:
            return answer_nll(
                model, self.tokenizer, examples, context=context, max_len=self.max_len
            )

    def ranking(
        self, adapter: Path | None, examples: Sequence[Example], **kwargs: Any
    ) -> RankingResult:
        """Fix ranking of ``examples`` (see :func:`~adaptune.evaluate.ranking.fix_ranking`)."""
        with self.using(adapter) as model:
            return fix_ranking(model, self.tokenizer, examples, max_len=self.max_len, **kwargs)
