"""TF-IDF features of issue texts, computed with numpy alone (no scikit-learn at serve time).

The weighting is scikit-learn's ``TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2))``:
lower-cased word tokens of two or more characters plus their bigrams, ``1 + ln(tf)``, smoothed
idf ``ln((1 + n) / (1 + df)) + 1`` and unit length. A test checks the numbers against it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from itertools import pairwise
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix

TOKEN = re.compile(r"(?u)\b\w\w+\b")
MIN_DF = 2
"""A term must occur in this many training texts (a single occurrence teaches nothing)."""
MAX_FEATURES = 40_000
"""Vocabulary cap: the terms found in the most texts are kept."""

Row = tuple[np.ndarray, np.ndarray]
"""One text's sparse vector: (term indices, weights)."""


def terms(text: str) -> list[str]:
    """The unigrams and bigrams of ``text``, in order."""
    toks = TOKEN.findall(text.lower())
    return toks + [f"{a} {b}" for a, b in pairwise(toks)]


class TfidfFeatures:
    """A fitted vocabulary with its idf weights."""

    def __init__(self, vocabulary: Sequence[str], idf: np.ndarray) -> None:
        if len(vocabulary) != len(idf):
            raise ValueError(f"{len(vocabulary)} terms for {len(idf)} idf weights")
        self.vocabulary = list(vocabulary)
        self.idf = np.asarray(idf, dtype=np.float64)
        self._index = {t: i for i, t in enumerate(self.vocabulary)}

    def __len__(self) -> int:
        return len(self.vocabulary)

    @classmethod
    def fit(
        cls, texts: Sequence[str], min_df: int = MIN_DF, max_features: int = MAX_FEATURES
    ) -> TfidfFeatures:
        """Learn the vocabulary and idf of ``texts``."""
        df: Counter[str] = Counter()
        for text in texts:
            df.update(set(terms(text)))
        kept = sorted((t for t, c in df.items() if c >= min_df), key=lambda t: (-df[t], t))
        vocab = sorted(kept[:max_features])
        n = len(texts)
        idf = np.array([math.log((1 + n) / (1 + df[t])) + 1.0 for t in vocab])
        return cls(vocab, idf)

    def transform(self, texts: Sequence[str]) -> list[Row]:
        """Sparse unit-length tf-idf vectors of ``texts`` (unknown terms are dropped)."""
        out = []
        for text in texts:
            counts = Counter(j for t in terms(text) if (j := self._index.get(t)) is not None)
            idx = np.fromiter(counts, dtype=np.int64, count=len(counts))
            tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
            val = (1.0 + np.log(tf)) * self.idf[idx] if len(idx) else tf
            norm = float(np.linalg.norm(val))
            out.append((idx, val / norm if norm else val))
        return out

    def to_csr(self, rows: Sequence[Row]) -> csr_matrix:
        """``rows`` as a scipy CSR matrix (training only: scipy comes with scikit-learn)."""
        from scipy.sparse import csr_matrix

        indptr = np.cumsum([0] + [len(i) for i, _v in rows])
        idx = np.concatenate([i for i, _v in rows]) if rows else np.zeros(0, np.int64)
        val = np.concatenate([v for _i, v in rows]) if rows else np.zeros(0)
        return csr_matrix((val, idx, indptr), shape=(len(rows), len(self)))
