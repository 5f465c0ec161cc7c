"""Triage scores: accuracy, macro-F1 and the confusion matrix of predicted issue types.

The classifier measures itself with them (its manifest's held-out metrics), and the evaluate
stage scores it against its baseline with the same function. Plain Python, no scikit-learn.
Conventions follow scikit-learn's defaults where they matter: a label's F1 is 0 when it has no
true and no predicted example (it still counts in the macro average of the ``labels`` asked
for), and predictions outside ``labels`` are wrong but appear in no column of the confusion
matrix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def triage_scores(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str] | None = None
) -> dict[str, Any]:
    """``{"accuracy", "macro_f1", "confusion", "labels"}``; ``confusion[i][j]`` counts
    examples whose true label is ``labels[i]`` and predicted label ``labels[j]``.

    ``labels`` defaults to the sorted labels seen in ``y_true`` and ``y_pred``.
    """
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} true labels for {len(y_pred)} predictions")
    names = list(labels) if labels is not None else sorted({*y_true, *y_pred})
    at = {name: i for i, name in enumerate(names)}
    confusion = [[0] * len(names) for _ in names]
    for t, p in zip(y_true, y_pred, strict=True):
        if t in at and p in at:
            confusion[at[t]][at[p]] += 1
    correct = sum(1 for t, p in zip(y_true, y_pred, strict=True) if t == p)
    accuracy = correct / len(y_true) if y_true else math.nan
    f1s = [_f1(y_true, y_pred, name) for name in names]
    macro = sum(f1s) / len(f1s) if f1s else math.nan
    return {"accuracy": accuracy, "macro_f1": macro, "confusion": confusion, "labels": names}


def _f1(y_true: Sequence[str], y_pred: Sequence[str], label: str) -> float:
    """F1 of one label: 2·TP / (2·TP + FP + FN), 0 when the label never occurs."""
    tp = sum(1 for t, p in zip(y_true, y_pred, strict=True) if t == label and p == label)
    fp = sum(1 for t, p in zip(y_true, y_pred, strict=True) if t != label and p == label)
    fn = sum(1 for t, p in zip(y_true, y_pred, strict=True) if t == label and p != label)
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


__all__ = ["triage_scores"]
