"""Evaluate: adapters → measurements on held-out windows and on what was learned before.

The stage's entry is :func:`~adaptune.evaluate.evaluation.evaluate_version` (``adaptune
evaluate``: one version against the base model); ``compare`` measures whole chains with
:func:`~adaptune.evaluate.chains.measure_chains`, the worker's gate its held-out sets
(:func:`~adaptune.evaluate.chains.heldout_sets`) with the
:class:`~adaptune.evaluate.measure.Evaluator`.

Reading order: :mod:`~adaptune.evaluate.metrics` (the continual-learning matrix R[i][j], ACC,
BWT, FWT, bootstrap intervals), :mod:`~adaptune.evaluate.scoring` (teacher-forced answer NLL),
:mod:`~adaptune.evaluate.ranking` (the true fix against hard negatives),
:mod:`~adaptune.evaluate.probes` (recurring issues whose fix was trained on),
:mod:`~adaptune.evaluate.answers` (answers generated through :mod:`adaptune.generate`),
:mod:`~adaptune.evaluate.generation` (ROUGE-L, embedding similarity, the retrieval-only
baseline), :mod:`~adaptune.evaluate.measure` (one base model, adapters put on in turn),
:mod:`~adaptune.evaluate.chains` (compare's chains), :mod:`~adaptune.evaluate.evaluation` (one
version) and :mod:`~adaptune.evaluate.classify` (the triage classifier against its baseline,
the duplicate search's recall@k).
"""

from __future__ import annotations

from adaptune.evaluate.generation import embedding_similarity, retrieval_baseline, rouge_l
from adaptune.evaluate.metrics import (
    acc,
    bootstrap_ci,
    bwt,
    cl_matrix,
    fwt,
    paired_diff_ci,
    summary,
)
from adaptune.evaluate.probes import memory_probes, probe_hits
from adaptune.evaluate.ranking import RankingResult, fix_ranking
from adaptune.evaluate.scoring import answer_nll, perplexity

__all__ = [
    "RankingResult",
    "acc",
    "answer_nll",
    "bootstrap_ci",
    "bwt",
    "cl_matrix",
    "embedding_similarity",
    "fix_ranking",
    "fwt",
    "memory_probes",
    "paired_diff_ci",
    "perplexity",
    "probe_hits",
    "retrieval_baseline",
    "rouge_l",
    "summary",
]
