"""Generated answers for evaluation, on llama.cpp when it is installed, else on transformers.

Scoring generated answers is the slow part of an evaluation on a CPU: the default model
generates several times faster through llama.cpp (the same Q4_1 GGUF, adapters converted to GGUF
LoRAs) than through transformers. :func:`answer_engine` picks the backend the way the service
does. Every engine is a :class:`~adaptune.generate.Generator` of :mod:`adaptune.generate`, and
each held-out example becomes the :class:`~adaptune.generate.Request` the service would send
for it, so the evaluation measures the served prompt; both backends decode greedily with the
training stop tokens, so they answer alike (the converted adapter's logit changes correlate at
0.99 with PEFT's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from adaptune.errors import ConfigError
from adaptune.evaluate.generation import embedding_similarity, rouge_l
from adaptune.generate import Answer, Generator, Request, answer_all
from adaptune.generate.llamacpp import LlamaCppGenerator, available
from adaptune.generate.local import generate_batch
from adaptune.generate.prompt import example_request
from adaptune.memory.embed import Embedder
from adaptune.types import Example

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from adaptune.evaluate.measure import Evaluator

BACKENDS = ("auto", "llamacpp", "transformers")


class AnswerEngine:
    """Answers held-out questions with the base model or one adapter, through a generator."""

    def __init__(self, generator: Generator) -> None:
        self.generator = generator
        self.name = generator.name

    def answers(
        self, adapter: Path | None, examples: Sequence[Example], context: bool, max_new: int
    ) -> list[str]:
        """Greedy answers in the order of ``examples``; the adapter is keyed by its folder."""
        requests = [example_request(ex, context, max_new, adapter) for ex in examples]
        return [answer.text for answer in answer_all(self.generator, requests)]


class EvaluatorGenerator:
    """The evaluator's base model as a generator: transformers (+ PEFT), batched, each adapter
    put on for its requests and taken off again."""

    name = "transformers"

    def __init__(self, evaluator: Evaluator, max_len: int) -> None:
        self.evaluator, self.max_len = evaluator, max_len

    def ready(self) -> bool:
        """Always: the evaluator holds the model."""
        return True

    def generate(self, request: Request) -> Answer:
        """One answer (a batch of one)."""
        return self.generate_batch([request])[0]

    def generate_batch(self, requests: Sequence[Request]) -> list[Answer]:
        """Batched greedy answers, in order, with each request's adapter (``None``: the base)."""
        out: list[Answer] = []
        for adapter, same in groupby(requests, key=lambda r: r.adapter_path):
            with self.evaluator.using(adapter) as model:
                tok = self.evaluator.tokenizer
                out.extend(generate_batch(model, tok, list(same), max_len=self.max_len))
        return out


class TransformersAnswers(AnswerEngine):
    """Generation with transformers (+ PEFT) on the evaluator's base model."""

    def __init__(self, evaluator: Evaluator, max_len: int) -> None:
        super().__init__(EvaluatorGenerator(evaluator, max_len))


class LlamaCppAnswers(AnswerEngine):
    """Generation with llama.cpp: the base GGUF once, each adapter converted on first use."""

    def __init__(self, home: Path | None, tokenizer: PreTrainedTokenizerBase, max_len: int) -> None:
        super().__init__(LlamaCppGenerator(home=home, tokenizer=tokenizer, max_len=max_len))


def answer_engine(
    backend: str, evaluator: Evaluator, model: str | None, home: Path | None, max_len: int
) -> AnswerEngine:
    """``auto``: llama.cpp for the default model when ``adaptune[llamacpp]`` is installed."""
    if backend not in BACKENDS:
        raise ConfigError(f"--backend {backend!r}: use one of {', '.join(BACKENDS)}.")
    if backend == "auto":
        backend = "llamacpp" if available() and model is None else "transformers"
    if backend == "llamacpp":
        if model is not None:
            raise ConfigError(
                "--backend llamacpp serves the default GGUF model only; use --backend "
                "transformers with --model."
            )
        if not available():
            raise ConfigError("--backend llamacpp needs llama-cpp-python: adaptune[llamacpp].")
        return LlamaCppAnswers(home, evaluator.tokenizer, max_len)
    return TransformersAnswers(evaluator, max_len)


@dataclass(frozen=True, slots=True)
class Generated:
    """One way of answering: the answers and their per-example scores."""

    answers: list[str]
    rouge: np.ndarray
    sim: np.ndarray


def score(answers: Sequence[str], refs: Sequence[str], embedder: Embedder) -> Generated:
    """ROUGE-L and sentence-embedding cosine of each answer against its reference."""
    rouge = np.array([rouge_l(a, r) for a, r in zip(answers, refs, strict=True)], dtype=float)
    return Generated(list(answers), rouge, embedding_similarity(answers, refs, embedder))


def generate_and_score(
    engine: AnswerEngine,
    adapter: Path | None,
    examples: Sequence[Example],
    context: bool,
    embedder: Embedder,
    max_new: int = 96,
) -> Generated:
    """Answer ``examples`` with ``engine`` and score against their reference fixes."""
    answers = engine.answers(adapter, examples, context, max_new) if examples else []
    return score(answers, [e.answer for e in examples], embedder)
