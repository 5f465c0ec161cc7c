"""Memory: the similar-issue index over resolved issues and their fixes.

Training puts the same retrieved context in its prompts that the service will (retrieval-
augmented fine-tuning), and evaluation's retrieval baseline answers from it.
"""

from __future__ import annotations

from adaptune.memory.embed import Embedder, default_embedder
from adaptune.memory.index import Hit, SimilarIndex

__all__ = ["Embedder", "Hit", "SimilarIndex", "default_embedder"]
