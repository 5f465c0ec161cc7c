"""Evaluation's generated answers through llama.cpp agree with transformers (slow, real model)."""

from __future__ import annotations

import pytest

from test_llamacpp import CONTEXT, QUESTIONS, base_gguf, needs_llama, real  # noqa: F401
from tiny_lora import ignore_peft_warning
from tiny_model import example

pytestmark = ignore_peft_warning


@pytest.mark.slow
@needs_llama
def test_evaluation_engines_agree(real: dict) -> None:  # noqa: F811
    from dataclasses import replace

    from adaptune.evaluate.answers import LlamaCppAnswers, TransformersAnswers, answer_engine
    from adaptune.evaluate.measure import Evaluator

    ev = Evaluator(real["model"], real["tok"], 512)
    fast = answer_engine("auto", ev, None, real["home"], 512)
    assert isinstance(fast, LlamaCppAnswers)
    other = answer_engine("auto", ev, "some/model", real["home"], 512)
    assert isinstance(other, TransformersAnswers)
    slow = TransformersAnswers(ev, 512)
    asks = [
        replace(example(1), question=QUESTIONS[0], meta={"context": [list(c) for c in CONTEXT]}),
        replace(example(2), question=QUESTIONS[1]),
    ]
    adapter = real["adapters"]["v0001"]
    got = {a: fast.answers(a, asks, True, 12) for a in (None, adapter)}
    want = {a: slow.answers(a, asks, True, 12) for a in (None, adapter)}
    assert got[None] != got[adapter]  # the converted adapter is in use
    for a in (None, adapter):
        # Greedy decoding follows the same path until a near-tie (the engines round differently).
        assert [t.split()[:4] for t in got[a]] == [t.split()[:4] for t in want[a]], a
