"""Fix ranking: does the model know *which* fix fits *which* issue?

A fall in answer NLL can come from learning how fixes are written (see DESIGN.md). Here each
held-out issue's true fix competes with the fixes of other issues: the ``hard_negatives`` whose
questions are most similar to it (sentence embeddings, or TF-IDF cosine without an embedder)
and random others, ``candidates_per_example`` in all. A candidate's score is how much the
question raises its likelihood::

    score(c) = NLL(c | empty question) − NLL(c | question)      (higher = the question helps)

Subtracting the empty-question NLL removes what the model thinks of a fix on its own (its
length, its style), which is exactly what a style-only adapter learns. The true fix's rank
counts every candidate scoring at least as high (ties count against it).

Cost, in token-forwards, with Q issues, C candidates, prompts of P tokens and answers cut to A
tokens: U·A once for the empty-question NLL of the U distinct candidates, plus Q·(P + C·A) for
the rest: the prompt runs once per issue and its cache serves all candidates (see
:class:`~adaptune.evaluate.scoring.Scorer`), against Q·C·(P + A) for full rows. The defaults
(Q=200, C=50, A=64, P≈400) come to about 0.75M token-forwards per adapter and window,
``max_examples=50, max_answer_tokens=32`` to about 0.1M (what that takes on a 2-core
CPU: ``bench/results/hand_measurements.md``). ``batch_size`` candidates share one copy of
the prompt's cache.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from adaptune.errors import ConfigError
from adaptune.evaluate.scoring import Scorer
from adaptune.generate.local import evaluating
from adaptune.generate.prompt import (
    Target,
    answer_target,
    example_context,
    example_signature,
    prompt_ids,
)
from adaptune.memory.embed import Embedder
from adaptune.train.format import encode
from adaptune.types import Example

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)
WORD = re.compile(r"[a-z0-9_]+")


@dataclass(frozen=True, slots=True)
class RankingResult:
    """Where each issue's true fix ranked among its candidates (rank 1 = first)."""

    acc_at_1: float
    """Share of issues whose true fix ranked first."""
    mrr: float
    """Mean reciprocal rank of the true fix."""
    ranks: tuple[int, ...]
    """The true fix's rank per issue, in the order of ``ids``."""
    candidates: tuple[int, ...]
    """How many candidates each issue had (fewer than asked when the pool is small)."""
    ids: tuple[str, ...]
    """The ranked examples' ids."""

    @classmethod
    def of(
        cls, ranks: Sequence[int], candidates: Sequence[int], ids: Sequence[str]
    ) -> RankingResult:
        """The result of per-issue ranks (NaN scores when there are none)."""
        r = np.asarray(ranks, dtype=float)
        top1 = float(np.mean(r == 1)) if r.size else math.nan
        mrr = float(np.mean(1.0 / r)) if r.size else math.nan
        return cls(top1, mrr, tuple(int(x) for x in ranks), tuple(candidates), tuple(ids))

    @property
    def hits(self) -> np.ndarray:
        """1.0 where the true fix ranked first: per-issue values for a bootstrap interval."""
        return (np.asarray(self.ranks) == 1).astype(float)

    @property
    def reciprocal_ranks(self) -> np.ndarray:
        """1 / rank per issue (its mean is the MRR)."""
        return 1.0 / np.asarray(self.ranks, dtype=float)


def fix_ranking(
    model: PreTrainedModel | PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    candidates_per_example: int = 50,
    hard_negatives: int = 10,
    seed: int = 0,
    *,
    embedder: Embedder | None = None,
    pool: Sequence[Example] | None = None,
    context: bool = False,
    max_examples: int | None = 200,
    max_answer_tokens: int | None = 64,
    max_len: int = 1024,
    batch_size: int = 16,
    priors: dict[Target, float] | None = None,
) -> RankingResult:
    """Rank each example's true fix among fixes of ``pool`` (default: the examples themselves).

    ``max_examples`` ranks a seeded sample of that many examples; ``context=True`` puts each
    example's retrieved ``meta["context"]`` in its prompt (the empty-question NLL never has it).
    ``priors`` caches the empty-question NLLs across calls on the same model (they depend on
    nothing else): a dict that the caller keeps per model and adapter.
    """
    pool = list(examples if pool is None else pool)
    queries = sample(examples, max_examples, seed)
    sets = candidate_sets(queries, pool, candidates_per_example, hard_negatives, seed, embedder)
    if not queries:
        return RankingResult.of([], [], [])
    answers = sorted({a for s in sets for a in s})
    targets = {a: answer_target(tokenizer, a, max_answer_tokens) for a in answers}
    budget = max_len - max(len(t.ids) for t in targets.values())
    with evaluating(model) as lm:
        probe = encode(tokenizer, queries[0].question, sets[0][0], max_len=max_len)
        scorer = Scorer.build(model, lm, tokenizer, batch_size, probe)
        empty = prompt_ids(tokenizer, "", budget=budget)
        known = {} if priors is None else priors
        todo = list(dict.fromkeys(t for a in answers if (t := targets[a]) not in known))
        known.update(zip(todo, scorer.nll(empty, todo), strict=True))
        prior = {a: known[targets[a]] for a in answers}
        ranks = []
        for query, cands in zip(queries, sets, strict=True):
            ctx = example_context(query) if context else ()
            prompt = prompt_ids(tokenizer, query.question, ctx, example_signature(query), budget)
            cond = scorer.nll(prompt, [targets[a] for a in cands])
            gain = np.array([prior[a] for a in cands]) - cond
            ranks.append(1 + int(np.sum(gain[1:] >= gain[0])))
    return RankingResult.of(ranks, [len(s) for s in sets], [q.id for q in queries])


def sample(examples: Sequence[Example], limit: int | None, seed: int) -> list[Example]:
    """At most ``limit`` examples, a seeded sample kept in the given order."""
    if limit is None or len(examples) <= limit:
        return list(examples)
    picked = np.random.default_rng([seed, 1]).choice(len(examples), size=limit, replace=False)
    return [examples[i] for i in sorted(picked)]


def candidate_sets(
    queries: Sequence[Example],
    pool: Sequence[Example],
    count: int,
    hard: int,
    seed: int = 0,
    embedder: Embedder | None = None,
) -> list[list[str]]:
    """Per query: its true answer first, then up to ``count − 1`` distinct other answers.

    Negatives come from pool examples other than the query whose answer differs from the true
    one: the ``hard`` ones of the most similar questions, then a seeded random rest.
    """
    if count < 2:
        raise ValueError("fix ranking needs at least 2 candidates per example")
    if not queries:
        return []
    sims = similarity([q.question for q in queries], [p.question for p in pool], embedder)
    rng = np.random.default_rng(seed)
    out = []
    for i, query in enumerate(queries):
        true = query.answer.strip()
        order = np.argsort(-sims[i], kind="stable")
        others = (pool[j] for j in order if pool[j].id != query.id)
        negatives = list(dict.fromkeys(a for p in others if (a := p.answer.strip()) != true))
        if not negatives:
            raise ConfigError(
                "Fix ranking needs at least two distinct fixes; evaluate on more examples."
            )
        cut = min(hard, count - 1)
        chosen, rest = negatives[:cut], negatives[cut:]
        need = min(count - 1 - len(chosen), len(rest))
        picks = sorted(rng.choice(len(rest), size=need, replace=False)) if need else []
        out.append([true, *chosen, *(rest[k] for k in picks)])
    if any(len(s) < count for s in out):
        log.warning("Fix ranking: fewer than %d candidates for some issues (small pool)", count)
    return out


def similarity(
    queries: Sequence[str], docs: Sequence[str], embedder: Embedder | None = None
) -> np.ndarray:
    """``(len(queries), len(docs))`` cosine similarities: embeddings, or TF-IDF without one."""
    if embedder is not None:
        return embedder.encode(queries) @ embedder.encode(docs).T
    return tfidf_similarity(queries, docs)


def tfidf_similarity(queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
    """TF-IDF cosine of lower-cased word tokens; IDF (smoothed) from ``docs``.

    Sparse by hand (an inverted index of numpy arrays): no dense vocabulary-wide matrix.
    """
    doc_bags = [Counter(WORD.findall(d.lower())) for d in docs]
    df = Counter(term for bag in doc_bags for term in bag)
    idf = {t: math.log((1 + len(docs)) / (1 + n)) + 1 for t, n in df.items()}
    postings: dict[str, tuple[list[int], list[float]]] = {}
    for j, bag in enumerate(doc_bags):
        for term, weight in _unit(bag, idf).items():
            rows, weights = postings.setdefault(term, ([], []))
            rows.append(j)
            weights.append(weight)
    arrays = {t: (np.array(r), np.array(w)) for t, (r, w) in postings.items()}
    out = np.zeros((len(queries), len(docs)))
    for i, text in enumerate(queries):
        for term, weight in _unit(Counter(WORD.findall(text.lower())), idf).items():
            rows, weights = arrays[term]
            out[i, rows] += weight * weights
    return out


def _unit(bag: Counter[str], idf: dict[str, float]) -> dict[str, float]:
    """Unit-length TF-IDF weights of the bag's terms known to ``idf``."""
    weights = {t: n * idf[t] for t, n in bag.items() if t in idf}
    norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
    return {t: w / norm for t, w in weights.items()}
