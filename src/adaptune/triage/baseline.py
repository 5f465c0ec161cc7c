"""The baseline the triage classifier is measured against: scikit-learn's defaults.

``TfidfVectorizer()`` (unigrams, no sublinear tf, no minimum frequency) followed by a
``LogisticRegression(class_weight="balanced")``: what anyone would try first. ``bench/triage.py``
and ``adaptune compare`` both measure the classifier beside it, on the same split.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

BASELINE_NAME = "tf-idf + logistic regression (scikit-learn defaults)"


def fit_baseline(texts: Sequence[str], labels: Sequence[str], seed: int = 0) -> Pipeline:
    """The baseline fitted on ``texts`` → ``labels``: a scikit-learn pipeline whose
    ``predict(texts)`` returns labels. Needs scikit-learn and at least two distinct labels."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    lr = LogisticRegression(class_weight="balanced", max_iter=2000, random_state=seed)
    return make_pipeline(TfidfVectorizer(), lr).fit(list(texts), list(labels))
