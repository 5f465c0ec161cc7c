"""What every generator shares: a :class:`Request`, an :class:`Answer`, the :class:`Generator`
protocol and :class:`GenerationError`.

The service answers tickets and the evaluation answers held-out issues through the same
protocol, so both send the model the same prompt (built by :mod:`adaptune.generate.prompt`).
A generator that can answer several requests at once (batched transformers in evaluation) also
has ``generate_batch``; :func:`answer_all` uses it when it is there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from adaptune.errors import AdaptuneError


class GenerationError(AdaptuneError):
    """The generator could not answer (model missing, adapter corrupt, server down)."""


@dataclass(frozen=True, slots=True)
class Request:
    """One answer to generate."""

    question: str
    context: tuple[tuple[str, str], ...] = ()
    """Similar resolved issues as ``(title, fix)`` pairs, as in training."""
    signature: str | None = None
    adapter_version: str | None = None
    """``None`` answers with the base model."""
    adapter_path: Path | None = None
    max_new_tokens: int = 128


@dataclass(frozen=True, slots=True)
class Answer:
    """A generated answer and what it cost."""

    text: str
    tokens: int
    seconds: float


class Generator(Protocol):
    """Anything that answers a :class:`Request`."""

    name: str

    def generate(self, request: Request) -> Answer:
        """Generate one answer."""
        ...

    def ready(self) -> bool:
        """Whether the model is loaded (or the server reachable)."""
        ...


def answer_all(generator: Generator, requests: Sequence[Request]) -> list[Answer]:
    """Answers to ``requests`` in order: batched where ``generator`` has ``generate_batch``,
    else one request at a time."""
    batched = getattr(generator, "generate_batch", None)
    if batched is not None:
        return list(batched(requests))
    return [generator.generate(request) for request in requests]
