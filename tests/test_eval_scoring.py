"""Model-based evaluation on the tiny Llama: answer NLL, fix ranking, probes, generation."""

from __future__ import annotations

import warnings
import zlib
from dataclasses import replace
from datetime import timedelta

import numpy as np
import pytest
import torch

from adaptune.errors import ConfigError
from adaptune.evaluate import (
    RankingResult,
    answer_nll,
    embedding_similarity,
    fix_ranking,
    memory_probes,
    perplexity,
    probe_hits,
    retrieval_baseline,
)
from adaptune.evaluate.ranking import candidate_sets, tfidf_similarity
from adaptune.evaluate.scoring import Scorer
from adaptune.generate.local import evaluating, generate_answers
from adaptune.generate.prompt import answer_target, prompt_ids
from adaptune.train.format import encode, encode_example
from tiny_lora import ignore_peft_warning
from tiny_model import example, tiny_model

BODIES = [
    "It fails when I call load_dataset.",
    "The cache folder is not writable.",
    "The column text is missing after map.",
    "Upgrading did not help at all.",
    "Streaming crashes on the first batch.",
    "The tokenizer hangs forever.",
    "Pushing to the hub fails.",
    "Arrow cannot cast the nested list.",
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pairs() -> list:
    """Eight issues with distinct bodies and distinct fixes."""
    return [example(i, body=BODIES[i]) for i in range(8)]


def fit(tok, examples, steps: int = 10, seed: int = 0):
    """A tiny model trained (full fine-tuning, Adam) on ``examples`` for ``steps`` epochs."""
    model = tiny_model(tok, seed).train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    encoded = [encode_example(tok, e, 256) for e in examples]
    for _ in range(steps):
        for enc in encoded:
            ids, labels = torch.tensor([enc.input_ids]), torch.tensor([enc.labels])
            model(input_ids=ids, labels=labels).loss.backward()
            opt.step()
            opt.zero_grad()
    return model.eval()


@pytest.fixture(scope="module")
def memorised(tok, pairs):
    return fit(tok, pairs)


def manual_nll(model, tok, examples, context: bool) -> list[float]:
    out = []
    for ex in examples:
        ctx = [tuple(p) for p in ex.meta.get("context", [])] if context else ()
        enc = encode(tok, ex.question, ex.answer, ctx, ex.signature, 1024)
        with torch.no_grad():
            ids, labels = torch.tensor([enc.input_ids]), torch.tensor([enc.labels])
            out.append(model(input_ids=ids, labels=labels).loss.item())
    return out


def with_context(ex):
    return replace(ex, meta={**ex.meta, "context": [["cache fails", "Set HF_DATASETS_CACHE."]]})


def test_answer_nll_equals_a_manual_loop_and_ignores_batching(tok, pairs) -> None:
    model = tiny_model(tok)
    three = [pairs[0], with_context(pairs[3]), pairs[5]]  # different lengths: padding
    for context in (False, True):
        want = manual_nll(model, tok, three, context)
        for batch_size in (1, 2, 3):
            got = answer_nll(model, tok, three, context=context, batch_size=batch_size)
            np.testing.assert_allclose(got, want, atol=1e-5)
    with_ctx, without = answer_nll(model, tok, three), answer_nll(model, tok, three, context=False)
    assert with_ctx[1] != without[1] and with_ctx[0] == pytest.approx(without[0])
    assert perplexity(with_ctx) == pytest.approx(np.exp(with_ctx.mean()))
    assert answer_nll(model, tok, []).shape == (0,)
    assert model.training is False


def test_nll_falls_after_a_few_sgd_steps_on_the_example(tok, pairs) -> None:
    model = tiny_model(tok)
    before = answer_nll(model, tok, pairs[:1])[0]
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    enc = encode_example(tok, pairs[0], 256)
    model.train()
    for _ in range(5):
        ids, labels = torch.tensor([enc.input_ids]), torch.tensor([enc.labels])
        model(input_ids=ids, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    assert answer_nll(model, tok, pairs[:1])[0] < before - 0.5
    assert model.training is True  # scoring put the mode back


@ignore_peft_warning
def test_answer_nll_scores_through_a_peft_adapter(tok, pairs) -> None:
    from peft import LoraConfig, get_peft_model

    base = tiny_model(tok)
    plain = answer_nll(base, tok, pairs[:3])
    torch.manual_seed(1)
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(base, lora).eval()
    got = answer_nll(peft_model, tok, pairs[:3], batch_size=2)
    np.testing.assert_allclose(got, manual_nll(peft_model, tok, pairs[:3], False), atol=1e-5)
    assert not np.allclose(got, plain)


def test_shared_prompt_cache_scores_like_full_rows(tok, pairs) -> None:
    model = tiny_model(tok)
    targets = [answer_target(tok, e.answer, max_tokens=12) for e in pairs]
    assert all(len(t.ids) <= 12 for t in targets) and targets[0] != targets[1]
    with evaluating(model) as lm:
        shared = Scorer.build(model, lm, tok, 3, encode(tok, pairs[0].question, pairs[0].answer))
        assert shared.head_only and shared.share_prefix
        full = replace(shared, share_prefix=False, head_only=False)
        prompt = prompt_ids(tok, pairs[2].question)
        np.testing.assert_allclose(
            shared.nll(prompt, targets), full.nll(prompt, targets), atol=1e-5
        )
    assert len(prompt_ids(tok, pairs[2].question + " word" * 300, budget=120)) <= 120


def test_tfidf_similarity_and_candidate_sets(pairs) -> None:
    sims = tfidf_similarity(["cache folder writable", "zzz"], ["the cache folder", "a tokenizer"])
    assert sims[0, 0] > 0 and sims[0, 1] == 0 and not sims[1].any()
    pool = [*pairs, replace(pairs[1], id="dup", answer=pairs[0].answer)]  # same fix, other id
    sets = candidate_sets(pairs, pool, count=5, hard=2, seed=0)
    for ex, cands in zip(pairs, sets, strict=True):
        assert cands[0] == ex.answer and len(cands) == 5 and len(set(cands)) == 5
    # Hard negatives come first: the fixes of the most similar questions ("dup" asks the
    # same question as pairs[1] with another fix), then random others.
    sims = tfidf_similarity([pairs[1].question], [p.question for p in pairs])[0]
    nearest = next(pairs[j].answer for j in np.argsort(-sims, kind="stable") if j not in (0, 1))
    assert sets[1][1:3] == [pairs[0].answer, nearest]
    assert sets == candidate_sets(pairs, pool, count=5, hard=2, seed=0)
    by_embedding = candidate_sets(pairs, pool, count=5, hard=1, embedder=WordEmbedder())
    assert by_embedding[1][:2] == [pairs[1].answer, pairs[0].answer]
    assert len(candidate_sets(pairs[:3], pairs[:3], count=50, hard=2)[0]) == 3  # small pool
    with pytest.raises(ConfigError, match="two distinct"):
        candidate_sets(pairs[:1], pairs[:1], count=5, hard=2)


def test_ranking_result_by_hand() -> None:
    result = RankingResult.of([1, 2, 4], [5, 5, 5], ["a", "b", "c"])
    assert result.acc_at_1 == pytest.approx(1 / 3)
    assert result.mrr == pytest.approx((1 + 1 / 2 + 1 / 4) / 3)
    assert result.hits.tolist() == [1.0, 0.0, 0.0]


def test_a_model_that_memorised_the_pairs_ranks_their_fixes_first(tok, pairs, memorised) -> None:
    # Uncut answers: pairs 0 and 4 (1 and 5 …) share a fix that only "(see #n)" tells apart.
    kwargs = {"candidates_per_example": 8, "hard_negatives": 2, "max_answer_tokens": None}
    trained = fix_ranking(memorised, tok, pairs, **kwargs)
    untrained = fix_ranking(tiny_model(tok), tok, pairs, **kwargs)
    assert trained.acc_at_1 >= 0.75 and trained.acc_at_1 > untrained.acc_at_1
    assert trained.mrr > untrained.mrr and trained.candidates == (8,) * 8
    assert trained.ids == tuple(p.id for p in pairs)
    # Style-only control: trained on the same fixes paired with the wrong issues.
    shuffled = [replace(p, answer=pairs[(i + 1) % 8].answer) for i, p in enumerate(pairs)]
    style = fix_ranking(fit(tok, shuffled), tok, pairs, **kwargs)
    assert style.acc_at_1 <= 0.25
    capped = fix_ranking(memorised, tok, pairs, max_examples=3, **kwargs)
    assert len(capped.ranks) == 3 and set(capped.ids) <= set(trained.ids)
    assert np.isnan(fix_ranking(memorised, tok, [], **kwargs).acc_at_1)


def test_memory_probes_structure(pairs) -> None:
    trained = [replace(p, signature=f"E{p.id[-1]}") for p in pairs[:3]]
    later = replace(pairs[4], id="later", split="heldout", signature="E1")
    later = replace(later, known_at=trained[1].known_at + timedelta(days=1))
    early = replace(later, id="early", known_at=trained[1].known_at - timedelta(days=1))
    other = replace(later, id="other", signature="E9")
    probes = memory_probes([*trained, later, early, other])
    kinds = [(p.meta["probe"], p.meta["trained_id"]) for p in probes]
    assert kinds == [
        *((k, t.id) for t in trained for k in ("signature", "reworded")),
        ("recurrence", trained[1].id),  # only the later issue with a trained signature
    ]
    first = probes[0]
    assert first.question == "Title: issue 0 fails\n\nE0" and first.answer == trained[0].answer
    assert BODIES[0] not in probes[1].question and "again" in probes[1].question
    assert probes[-1].question == later.question and probes[-1].answer == trained[1].answer
    assert all(p.split == "probe" and p.task == "qa" for p in probes)
    assert len({p.id for p in probes}) == len(probes)
    assert memory_probes([*trained, later], trained_windows={"w009"}) == []


def test_probe_hits_are_higher_for_the_model_that_learned_the_fixes(tok, pairs, memorised) -> None:
    # Each issue recurs word for word a day later; its own error signature names the fix.
    trained = [replace(p, signature=f"E{i}") for i, p in enumerate(pairs)]
    later = [
        replace(p, id=f"later-{p.id}", split="heldout", known_at=p.known_at + timedelta(days=1))
        for p in trained
    ]
    probes = [p for p in memory_probes(trained + later) if p.meta["probe"] == "recurrence"]
    assert [p.answer for p in probes] == [p.answer for p in pairs]
    kwargs = {"candidates_per_example": 8, "hard_negatives": 2, "max_answer_tokens": None}
    learned = probe_hits(memorised, tok, probes, trained, **kwargs)
    assert learned >= 0.75 and learned > probe_hits(tiny_model(tok), tok, probes, trained, **kwargs)


def test_generate_answers_is_greedy_deterministic_and_batch_independent(tok, memorised, pairs):
    batched = generate_answers(memorised, tok, pairs[:3], max_new_tokens=24, batch_size=3)
    again = generate_answers(memorised, tok, pairs[:3], max_new_tokens=24, batch_size=3)
    alone = [generate_answers(memorised, tok, [p], max_new_tokens=24)[0] for p in pairs[:3]]
    assert batched == again == alone and all(isinstance(a, str) for a in batched)
    assert batched[0].startswith("Pass split='train'.")  # it learned the fix
    assert "<|im_end|>" not in "".join(batched)


class WordEmbedder:
    """Hashed bag of words, unit length: an Embedder stand-in that needs no model."""

    dim = 256

    def encode(self, texts):
        vecs = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split():
                vecs[i, zlib.crc32(word.encode()) % self.dim] += 1
        return vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-9)


def test_embedding_similarity_is_the_cosine_of_each_pair() -> None:
    got = embedding_similarity(["set the cache", "a b"], ["set the cache", "c d"], WordEmbedder())
    assert got == pytest.approx([1.0, 0.0], abs=1e-6)
    with pytest.raises(ValueError):
        embedding_similarity(["x"], [], WordEmbedder())


def test_retrieval_baseline_never_answers_from_the_future(pairs) -> None:
    train = pairs[:4]
    query = replace(pairs[1], id="q", split="heldout")  # the same question as train[1] …
    past = replace(query, id="q-past", known_at=train[1].known_at - timedelta(days=1))
    answers = retrieval_baseline(
        train, [query, past, replace(train[2], split="heldout")], WordEmbedder()
    )
    assert answers[0] == train[1].answer  # known by then: its twin's fix
    assert answers[1] != train[1].answer and answers[1] in {train[0].answer, ""}  # … not yet known
    assert answers[2] != train[2].answer  # never itself
    assert retrieval_baseline(train, [], WordEmbedder()) == []


@ignore_peft_warning
def test_evaluator_scores_each_example_and_prior_once_per_adapter(tok, pairs, tmp_path) -> None:
    from peft import LoraConfig, get_peft_model

    from adaptune.evaluate.measure import Evaluator

    lora = get_peft_model(tiny_model(tok), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    lora.save_pretrained(tmp_path / "adapter")
    ev = Evaluator(tiny_model(tok), tok, max_len=256)
    forwards = []
    ev.model.get_decoder().register_forward_pre_hook(lambda *a: forwards.append(1))
    base = ev.nll(None, pairs[:4], False)
    assert len(forwards) > 0
    forwards.clear()
    again = ev.nll(None, pairs[2:6], False)  # two cached, two new
    assert again[:2].tolist() == base[2:].tolist()
    assert again.tolist() == pytest.approx(ev.nll(None, pairs[2:6], False).tolist())
    fresh = Evaluator(tiny_model(tok), tok, max_len=256).nll(None, pairs[2:6], False)
    assert again == pytest.approx(fresh, abs=1e-5)
    counted = len(forwards)
    ev.nll(None, pairs[:6], False)
    assert len(forwards) == counted  # nothing new to score
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        adapted = ev.nll(tmp_path / "adapter", pairs[:4], False)
    assert not [w for w in seen if "is_gradient_checkpointing" in str(w.message)]  # PEFT's, muted
    assert not np.allclose(adapted, base)  # another adapter is another cache
    with_ctx = [with_context(p) for p in pairs[:4]]  # same ids, context added: scored anew
    assert not np.allclose(ev.nll(None, with_ctx, True), base)
    kwargs = {"candidates_per_example": 6, "hard_negatives": 2, "max_answer_tokens": 16}
    first = ev.ranking(None, pairs[:4], pool=pairs, **kwargs)
    forwards.clear()
    second = ev.ranking(None, pairs[:4], pool=pairs, **kwargs)
    assert second.ranks == first.ranks
    rescored = len(forwards)
    forwards.clear()
    Evaluator(ev.model, tok, max_len=256).ranking(None, pairs[:4], pool=pairs, **kwargs)
    assert rescored < len(forwards)  # the empty-question priors were not scored again
