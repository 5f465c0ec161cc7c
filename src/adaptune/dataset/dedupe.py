"""Near-duplicate detection with MinHash LSH over word shingles.

Used twice: to collapse repeated questions (the earliest one stays) and to check that no
held-out question has a near copy in any training window.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from datasketch import MinHash, MinHashLSH

THRESHOLD = 0.8
"""Estimated Jaccard similarity of word 3-shingles above which two texts are near copies."""
NUM_PERM = 64
_TOKEN = re.compile(r"\w+")


def shingles(text: str, n: int = 3) -> set[bytes]:
    """Lower-cased word ``n``-grams of ``text`` (the words themselves for very short texts)."""
    words = _TOKEN.findall(text.lower())
    if len(words) < n:
        return {w.encode() for w in words} or {b""}
    return {" ".join(words[i : i + n]).encode() for i in range(len(words) - n + 1)}


def signatures(texts: Sequence[str]) -> list[MinHash]:
    """One MinHash per text (vectorised updates)."""
    out = []
    for text in texts:
        m = MinHash(num_perm=NUM_PERM, seed=1)
        m.update_batch(list(shingles(text)))
        out.append(m)
    return out


def near_duplicate_groups(texts: Sequence[str], threshold: float = THRESHOLD) -> list[int]:
    """For each text, the index of the first earlier text it nearly copies (itself if none).

    Texts must come in the order that decides which copy is kept (oldest first).
    """
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    sigs = signatures(texts)
    keep_of = list(range(len(texts)))
    for i, sig in enumerate(sigs):
        hits = [int(k) for k in lsh.query(sig)]
        close = [h for h in hits if sig.jaccard(sigs[h]) >= threshold]
        if close:
            keep_of[i] = keep_of[min(close)]
        else:
            lsh.insert(str(i), sig)
    return keep_of


def has_near_copy(
    queries: Sequence[str], corpus: Sequence[str], threshold: float = THRESHOLD
) -> np.ndarray:
    """For each query, whether ``corpus`` holds a near copy of it."""
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    corpus_sigs = signatures(corpus)
    for i, sig in enumerate(corpus_sigs):
        lsh.insert(str(i), sig)
    found = np.zeros(len(queries), dtype=bool)
    for i, sig in enumerate(signatures(queries)):
        found[i] = any(sig.jaccard(corpus_sigs[int(k)]) >= threshold for k in lsh.query(sig))
    return found
