"""Evaluate: adapters → measurements on held-out windows and on what was learned before.

Reading order: :mod:`~adaptune.evaluate.metrics` (the continual-learning matrix R[i][j], ACC,
BWT, FWT, bootstrap intervals), :mod:`~adaptune.evaluate.scoring` (teacher-forced answer NLL),
:mod:`~adaptune.evaluate.ranking` (the true fix against hard negatives),
:mod:`~adaptune.evaluate.probes` (recurring issues whose fix was trained on),
:mod:`~adaptune.evaluate.answers` (answers generated through :mod:`adaptune.generate`),
:mod:`~adaptune.evaluate.generation` (ROUGE-L, embedding similarity, the retrieval-only
baseline) and :mod:`~adaptune.evaluate.classify` (triage and duplicates).
"""

from __future__ import annotations

from adaptune.evaluate.classify import recall_at_k, triage_scores
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
    "recall_at_k",
    "retrieval_baseline",
    "rouge_l",
    "summary",
    "triage_scores",
]
