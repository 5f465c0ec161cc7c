"""The prompt the model sees and the tokens that end its answer, from the training chat template.

Every engine (transformers, llama.cpp, the evaluation's batched generation) builds its prompt
here, from a question, the retrieved ``(title, fix)`` context and the error signature, through
:func:`adaptune.train.format.encode`, so the service, the evaluation and training agree token
for token. The teacher-forced scores in :mod:`adaptune.evaluate.scoring` use the same
:func:`answer_target` and :func:`split_prompt`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from adaptune.generate.base import Request
from adaptune.train.format import IGNORE, Encoded, build_messages, encode
from adaptune.types import Example

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

NO_LIMIT = 1 << 30
"""A ``max_len`` that never cuts (candidate answers are cut by token count instead)."""


@dataclass(frozen=True, slots=True)
class Target:
    """An answer as the tokens that follow any prompt: ids, and labels (IGNORE: no loss)."""

    ids: tuple[int, ...]
    labels: tuple[int, ...]


def example_context(example: Example) -> list[tuple[str, str]]:
    """The retrieved ``(title, fix)`` pairs in ``meta["context"]`` (none when absent)."""
    return [(str(t), str(f)) for t, f in example.meta.get("context") or []]


def example_signature(example: Example) -> str | None:
    """The error signature encode keeps when it must cut the question."""
    return example.signature or example.meta.get("signature")


def example_request(
    example: Example, context: bool = True, max_new_tokens: int = 128, adapter: Path | None = None
) -> Request:
    """The :class:`Request` for ``example``'s question, as the service would send it.

    ``context=False`` leaves the retrieved context out; ``adapter`` (a PEFT folder) is keyed by
    its path.
    """
    return Request(
        question=example.question,
        context=tuple(example_context(example)) if context else (),
        signature=example_signature(example),
        adapter_version=str(adapter) if adapter else None,
        adapter_path=adapter,
        max_new_tokens=max_new_tokens,
    )


def split_prompt(encoded: Encoded) -> tuple[list[int], Target]:
    """An encoded example as its prompt ids and its answer :class:`Target`."""
    at = next(i for i, label in enumerate(encoded.labels) if label != IGNORE)
    return list(encoded.input_ids[:at]), Target(encoded.input_ids[at:], encoded.labels[at:])


def answer_target(
    tokenizer: PreTrainedTokenizerBase, answer: str, max_tokens: int | None = None
) -> Target:
    """The answer's tokens as the chat template renders them, cut to the first ``max_tokens``.

    The assistant turn renders the same after any user turn, so one target serves every
    prompt. A cut answer loses its end-of-turn token with its tail.
    """
    _, target = split_prompt(encode(tokenizer, "", answer, max_len=NO_LIMIT))
    if max_tokens is None:
        return target
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    return Target(target.ids[:max_tokens], target.labels[:max_tokens])


def prompt_ids(
    tokenizer: PreTrainedTokenizerBase,
    question: str,
    context: Sequence[tuple[str, str]] = (),
    signature: str | None = None,
    budget: int = 1024,
) -> list[int]:
    """The chat prompt up to the assistant's turn, at most ``budget`` tokens.

    Cut the way :func:`encode` cuts (retrieved context first, then the question's tail).
    """
    placeholder = len(answer_target(tokenizer, ".").ids)
    encoded = encode(tokenizer, question, ".", context, signature, budget + placeholder)
    return split_prompt(encoded)[0]


def request_ids(tokenizer: PreTrainedTokenizerBase, request: Request, max_len: int) -> list[int]:
    """The prompt of ``request``, leaving room for its ``max_new_tokens`` within ``max_len``."""
    budget = max_len - request.max_new_tokens
    return prompt_ids(tokenizer, request.question, request.context, request.signature, budget)


def request_messages(request: Request) -> list[dict]:
    """The chat of ``request`` for a server that applies the chat template itself.

    Uncut: the signature only matters where :func:`encode` must cut, and the server does not.
    """
    return build_messages(request.question, request.context)


def stop_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The token that ends an assistant turn in the chat template, and the eos token."""
    target = answer_target(tokenizer, "x")
    turn_end = [i for i, label in zip(target.ids, target.labels, strict=True) if label != IGNORE][
        -1
    ]
    if tokenizer.eos_token_id is None:
        return [turn_end]
    return list(dict.fromkeys([turn_end, tokenizer.eos_token_id]))
