"""Chat formatting: loss only on the answer and its end-of-turn token; truncation order."""

from __future__ import annotations

import pytest

from adaptune.errors import ConfigError
from adaptune.train.format import IGNORE, SYSTEM_PROMPT, build_messages, encode, encode_example
from tiny_model import example


def answer_part(tok, enc) -> str:
    return tok.decode([i for i in enc.labels if i != IGNORE])


def test_labels_are_the_answer_and_end_of_turn(tok) -> None:
    enc = encode(tok, "Title: load fails\n\nValueError here", "Pass split='train'.")
    assert answer_part(tok, enc) == "Pass split='train'.<|im_end|>"
    first = enc.labels.index(next(i for i in enc.labels if i != IGNORE))
    prompt = tok.decode(enc.input_ids[:first])
    assert prompt.startswith("<|im_start|>system\n" + SYSTEM_PROMPT)
    assert prompt.endswith("<|im_start|>assistant\n")
    assert tok.decode(enc.input_ids[first:]) == "Pass split='train'.<|im_end|>\n"
    assert not enc.truncated


def test_context_goes_in_the_user_turn(tok) -> None:
    messages = build_messages("Title: q", [("old issue", "set the cache")], "fix")
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    assert messages[1]["content"] == (
        "Similar resolved issues:\n- old issue\n  Fix: set the cache\n\nIssue:\nTitle: q"
    )
    ex = example(1)
    ex.meta["context"] = [["old issue", "set the cache"]]
    assert "Fix: set the cache" in tok.decode(encode_example(tok, ex, 512).input_ids)


def test_truncation_keeps_title_signature_and_answer(tok) -> None:
    body = "lorem ipsum dolor sit amet " * 80 + "\nTraceback ... ValueError: boom"
    question = f"Title: loading crashes badly\n\n{body}"
    answer = "Upgrade datasets to 2.14 and pass split='train'. " * 6
    signature = "ValueError: boom @ datasets.load:load_dataset"
    context = [("old issue", "x " * 200)]
    enc = encode(tok, question, answer, context, signature, max_len=384)
    text = tok.decode(enc.input_ids)
    assert enc.truncated and len(enc) <= 384
    assert "Title: loading crashes badly" in text
    assert f"Error signature: {signature}" in text
    assert "lorem ipsum" in text  # the head of the body
    assert "Similar resolved issues" not in text  # context goes first
    assert answer_part(tok, enc) == answer.strip() + "<|im_end|>"  # answer kept whole


def test_long_answer_is_cut_at_its_tail_never_dropped(tok) -> None:
    answer = " ".join(f"step{i}" for i in range(400))
    enc = encode(tok, "Title: t\n\n" + "body " * 300, answer, max_len=160)
    kept = answer_part(tok, enc)
    assert len(enc) <= 160
    assert kept.endswith("<|im_end|>") and answer.startswith(kept.removesuffix("<|im_end|>"))
    assert len(kept) > 40
    assert "Title: t" in tok.decode(enc.input_ids)


def test_too_small_max_len_says_what_to_do(tok) -> None:
    with pytest.raises(ConfigError, match="raise max_len"):
        encode(tok, "Title: " + "very long title " * 30, "fix " * 100, max_len=64)


def test_empty_answer_is_rejected(tok) -> None:
    with pytest.raises(ConfigError, match="empty answer"):
        encode(tok, "Title: t", "   ")
