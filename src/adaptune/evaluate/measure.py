"""Measuring adapters: one base model in memory, each adapter put on it in turn.

:class:`Evaluator` is the stage's workhorse for the continual-learning matrix: answer NLL of the
base model or of any registered adapter on a set of held-out examples, with or without the
retrieved context, plus fix ranking; the base weights are loaded once and the adapter is
removed again after each measurement.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from adaptune.evaluate.ranking import RankingResult, fix_ranking
from adaptune.evaluate.scoring import answer_nll
from adaptune.train.lora import quiet_peft
from adaptune.types import Example

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from adaptune.generate.prompt import Target


_Version = tuple[str | int | None, ...]
"""An adapter's identity in the score caches (see :func:`_version`)."""


class Evaluator:
    """A base model and tokenizer, measured bare or with one adapter at a time.

    Scores are kept per adapter (its folder and weights file's size and time) for the life of
    the evaluator: an example measured twice in the same way (the continual-learning matrix
    and the ways to answer share cells), or a candidate fix's empty-question NLL needed by
    several rankings, is computed once.
    """

    def __init__(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, max_len: int = 1024
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_len = max_len
        self._nll: dict[tuple[_Version, bool, int, str], float] = {}
        self._priors: dict[tuple[_Version, int], dict[Target, float]] = {}

    @contextmanager
    def using(self, adapter: Path | None) -> Iterator[PreTrainedModel | PeftModel]:
        """The base model (``adapter=None``) or the base with ``adapter`` loaded, then removed."""
        if adapter is None:
            yield self.model
            return
        from peft import PeftModel

        with quiet_peft():
            peft_model = PeftModel.from_pretrained(self.model, str(adapter), is_trainable=False)
        try:
            yield peft_model
        finally:
            self.model = peft_model.unload()

    def nll(self, adapter: Path | None, examples: Sequence[Example], context: bool) -> np.ndarray:
        """Per-example answer NLL on ``examples``."""
        keys = [(_version(adapter), context, self.max_len, _digest(e)) for e in examples]
        todo = {k: e for k, e in zip(keys, examples, strict=True) if k not in self._nll}
        if todo:
            with self.using(adapter) as model:
                got = answer_nll(
                    model, self.tokenizer, list(todo.values()), context=context,
                    max_len=self.max_len,
                )  # fmt: skip
            self._nll.update(zip(todo, got.tolist(), strict=True))
        return np.array([self._nll[k] for k in keys])

    def ranking(
        self, adapter: Path | None, examples: Sequence[Example], **kwargs: Any
    ) -> RankingResult:
        """Fix ranking of ``examples`` (see :func:`~adaptune.evaluate.ranking.fix_ranking`)."""
        priors = self._priors.setdefault((_version(adapter), self.max_len), {})
        with self.using(adapter) as model:
            return fix_ranking(
                model, self.tokenizer, examples, max_len=self.max_len, priors=priors, **kwargs
            )


def _version(adapter: Path | None) -> _Version:
    """What identifies an adapter's weights cheaply: its folder, and its weights file's size and
    modification time (a folder rewritten in place scores anew)."""
    if adapter is None:
        return ()
    path = Path(adapter).resolve()
    weights = path / "adapter_model.safetensors"
    stat = weights.stat() if weights.exists() else None
    return (str(path), stat.st_size if stat else None, stat.st_mtime_ns if stat else None)


def _digest(example: Example) -> str:
    """An example's identity for the score cache: its id, question, answer and context."""
    context = json.dumps(example.meta.get("context") or [], sort_keys=True, default=str)
    blob = "\0".join((example.id, example.question, example.answer, context))
    return hashlib.sha1(blob.encode()).hexdigest()
