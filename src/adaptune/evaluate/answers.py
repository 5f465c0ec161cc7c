"""Generated answers for evaluation, on llama.cpp when it is installed, else on transformers.

Scoring generated answers is the slow part of an evaluation on a CPU: the default model
generates several times faster through llama.cpp (the same Q4_1 GGUF, adapters converted to GGUF
LoRAs) than through transformers. :func:`answer_engine` picks the backend the way the service
does; both engines decode greedily from the training prompt with the training stop tokens, so
they answer alike (the converted adapter's logit changes correlate at 0.99 with PEFT's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from adaptune.errors import ConfigError
from adaptune.evaluate.generation import embedding_similarity, generate_answers, rouge_l
from adaptune.evaluate.scoring import example_context, example_signature
from adaptune.memory.embed import Embedder
from adaptune.types import Example

BACKENDS = ("auto", "llamacpp", "transformers")


class AnswerEngine(Protocol):
    """Answers held-out questions with the base model or one adapter."""

    name: str

    def answers(
        self, adapter: Path | None, examples: Sequence[Example], context: bool, max_new: int
    ) -> list[str]:
        """Greedy answers in the order of ``examples``."""
        ...


class TransformersAnswers:
    """Generation with transformers (+ PEFT) on the evaluator's base model."""

    name = "transformers"

    def __init__(self, evaluator: Any, max_len: int) -> None:
        self.evaluator, self.max_len = evaluator, max_len

    def answers(
        self, adapter: Path | None, examples: Sequence[Example], context: bool, max_new: int
    ) -> list[str]:
        """Batched greedy answers with ``adapter`` on the base (``None``: the base alone)."""
        with self.evaluator.using(adapter) as model:
            return generate_answers(
                model,
                self.evaluator.tokenizer,
                examples,
                max_new_tokens=max_new,
                context=context,
                max_len=self.max_len,
            )


class LlamaCppAnswers:
    """Generation with llama.cpp: the base GGUF once, each adapter converted on first use."""

    name = "llamacpp"

    def __init__(self, home: Path, tokenizer: Any, max_len: int) -> None:
        from adaptune.serve.llamacpp import LlamaCppGenerator

        self.generator = LlamaCppGenerator(home=home, tokenizer=tokenizer, max_len=max_len)

    def answers(
        self, adapter: Path | None, examples: Sequence[Example], context: bool, max_new: int
    ) -> list[str]:
        """One greedy answer per example; the adapter is keyed by its folder."""
        from adaptune.serve.generator import Request

        out = []
        for ex in examples:
            request = Request(
                question=ex.question,
                context=tuple(example_context(ex)) if context else (),
                signature=example_signature(ex),
                adapter_version=str(adapter) if adapter else None,
                adapter_path=adapter,
                max_new_tokens=max_new,
            )
            out.append(self.generator.generate(request).text)
        return out


def answer_engine(
    backend: str, evaluator: Any, model: str | None, home: Path, max_len: int
) -> AnswerEngine:
    """``auto``: llama.cpp for the default model when ``adaptune[llamacpp]`` is installed."""
    from adaptune.serve import llamacpp

    if backend not in BACKENDS:
        raise ConfigError(f"--backend {backend!r}: use one of {', '.join(BACKENDS)}.")
    if backend == "auto":
        backend = "llamacpp" if llamacpp.available() and model is None else "transformers"
    if backend == "llamacpp":
        if model is not None:
            raise ConfigError(
                "--backend llamacpp serves the default GGUF model only; use --backend "
                "transformers with --model."
            )
        if not llamacpp.available():
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
