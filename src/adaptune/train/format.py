"""Chat formatting: an example → token ids, with the loss on the answer tokens only.

The prompt is the tokenizer's own chat template: a short system prompt, optionally the similar
resolved issues that retrieval found (the service puts the same context in its prompt), then the
issue. Labels are -100 everywhere except the answer and the end-of-turn token that closes it.
Too long an example is cut in this order: retrieved context, the question's tail (keeping its
title, error signature and the head of the body), then the answer's tail, never all of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from adaptune.errors import ConfigError
from adaptune.types import Example

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IGNORE = -100
"""Label of tokens that carry no loss."""
SYSTEM_PROMPT = (
    "You are this project's support assistant. You answer its issues with the fix that "
    "resolved them: specific, short, in the project's own words."
)
CUT_MARK = "\n[…]"
MIN_ANSWER = 32
"""Fewest answer tokens kept when an example must be cut (fewer when the answer is shorter)."""

Context = Sequence[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Encoded:
    """One tokenised example: prompt and answer ids, labels only on the answer."""

    input_ids: tuple[int, ...]
    """Prompt ids followed by answer ids (answer, end-of-turn, and any template tail)."""
    labels: tuple[int, ...]
    """``IGNORE`` outside the answer and its end-of-turn token."""
    truncated: bool = False
    """Whether anything was cut to fit ``max_len``."""

    def __len__(self) -> int:
        return len(self.input_ids)


def build_messages(question: str, context: Context = (), answer: str | None = None) -> list[dict]:
    """The chat for an issue: system prompt, user turn (context + question), maybe the answer."""
    user = question
    if context:
        lines = "".join(_pair(title, fix) for title, fix in context)
        user = f"Similar resolved issues:\n{lines}\nIssue:\n{question}"
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return messages


def encode_example(tokenizer: PreTrainedTokenizerBase, example: Example, max_len: int) -> Encoded:
    """Encode a qa example; ``meta["context"]`` may hold retrieved ``[title, fix]`` pairs."""
    context = [(str(t), str(f)) for t, f in example.meta.get("context") or []]
    signature = example.signature or example.meta.get("signature")
    return encode(tokenizer, example.question, example.answer, context, signature, max_len)


def encode(
    tokenizer: PreTrainedTokenizerBase,
    question: str,
    answer: str,
    context: Context = (),
    signature: str | None = None,
    max_len: int = 1024,
) -> Encoded:
    """Tokenise one question → answer pair with the chat template, cut to ``max_len`` tokens."""
    answer = answer.strip()
    if not answer:
        raise ConfigError("An example has an empty answer; rebuild the dataset.")
    prompt, target = render(tokenizer, question, context, answer)
    if len(prompt) + len(target) <= max_len:
        return _encoded(prompt, target, truncated=False)
    budget = _Budget.plan(tokenizer, question, context, answer, signature, max_len)
    for _ in range(6):  # re-tokenising cut text can shift a few tokens; tighten until it fits
        q, c, a = budget.texts()
        prompt, target = render(tokenizer, q, c, a)
        overflow = len(prompt) + len(target) - max_len
        if overflow <= 0:
            return _encoded(prompt, target, truncated=True)
        budget.shrink(overflow)
    raise ConfigError(f"Could not fit an example into max_len={max_len}; raise max_len.")


def render(
    tokenizer: PreTrainedTokenizerBase, question: str, context: Context, answer: str
) -> tuple[list[int], list[tuple[int, bool]]]:
    """Prompt ids, and the answer part as ``(id, carries_loss)`` pairs."""
    messages = build_messages(question, context)
    prompt_text = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )
    full = tokenizer.apply_chat_template(
        [*messages, {"role": "assistant", "content": answer}], tokenize=False
    )
    suffix = full[len(prompt_text) :]
    at = suffix.find(answer)
    if not full.startswith(prompt_text) or at < 0:
        raise ConfigError(
            "The tokenizer's chat template does not render the prompt as the start of the chat "
            "or rewrites the answer; use a model whose template does (most instruct models)."
        )
    end = at + len(answer)
    answer_ids = _ids(tokenizer, suffix[:end])
    tail = _ids(tokenizer, suffix[end:]) or [tokenizer.eos_token_id]
    if tail[0] is None:
        raise ConfigError("The chat template ends answers with nothing and there is no eos token.")
    # The first token after the answer ends the turn (<|im_end|>, <eot_id> …): the model must
    # learn to stop there; what follows it (a newline) is template padding, not the answer.
    target = [(i, True) for i in answer_ids] + [(tail[0], True)] + [(i, False) for i in tail[1:]]
    return _ids(tokenizer, prompt_text), target


def _ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def _encoded(prompt: list[int], target: list[tuple[int, bool]], truncated: bool) -> Encoded:
    ids = [*prompt, *(i for i, _ in target)]
    labels = [IGNORE] * len(prompt) + [i if keep else IGNORE for i, keep in target]
    return Encoded(tuple(ids), tuple(labels), truncated)


@dataclass(slots=True)
class _Budget:
    """Token budgets of the three cuttable parts, shrunk in the documented order."""

    tokenizer: PreTrainedTokenizerBase
    context: list[tuple[str, str]]
    title: str
    extra: str
    body_ids: list[int]
    answer_ids: list[int]
    max_len: int
    ctx: int = 0
    body: int = 0
    ans: int = 0

    @classmethod
    def plan(
        cls,
        tok: PreTrainedTokenizerBase,
        question: str,
        context: Context,
        answer: str,
        sig: str | None,
        n: int,
    ):
        """Budgets that cut the first render's overflow."""
        title, _, body = question.partition("\n")
        extra = f"\nError signature: {sig}" if sig and sig not in title else ""
        budget = cls(tok, list(context), title, extra, _ids(tok, body), _ids(tok, answer), n)
        budget.ctx = sum(len(_ids(tok, _pair(t, f))) for t, f in context)
        budget.body, budget.ans = len(budget.body_ids), len(budget.answer_ids)
        prompt, target = render(tok, question, context, answer)
        # The kept signature line and the cut mark are added to the question: pay for them too.
        added = len(_ids(tok, extra + CUT_MARK))
        budget.shrink(len(prompt) + len(target) - n + added)
        return budget

    def shrink(self, overflow: int) -> None:
        """Cut ``overflow`` tokens: context, body to a quarter of max_len, answer, body."""
        body_floor = min(self.body, self.max_len // 4)
        ans_floor = min(len(self.answer_ids), MIN_ANSWER)
        for part, floor in (("ctx", 0), ("body", body_floor), ("ans", ans_floor), ("body", 0)):
            cut = min(overflow, getattr(self, part) - floor)
            if cut > 0:
                setattr(self, part, getattr(self, part) - cut)
                overflow -= cut
        if overflow > 0:
            raise ConfigError(
                f"max_len={self.max_len} is too small for the chat template, the issue title and "
                f"{MIN_ANSWER} answer tokens; raise max_len."
            )

    def texts(self) -> tuple[str, list[tuple[str, str]], str]:
        """Question, context and answer cut to the current budgets."""
        kept, used = [], 0
        for title, fix in self.context:
            used += len(_ids(self.tokenizer, _pair(title, fix)))
            if used > self.ctx:
                break
            kept.append((title, fix))
        head = self.tokenizer.decode(self.body_ids[: self.body])
        question = f"{self.title}{self.extra}\n{head}{CUT_MARK}"
        answer = self.tokenizer.decode(self.answer_ids[: self.ans]).strip()
        return question, kept, answer


def _pair(title: str, fix: str) -> str:
    return f"- {title}\n  Fix: {fix}\n"
