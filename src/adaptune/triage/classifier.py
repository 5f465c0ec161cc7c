"""The triage classifier: sentence embeddings + TF-IDF features → multinomial logistic regression.

Measured on the real dumps (``bench/triage.py``), tuned TF-IDF word and bigram features carry
the signal (issue-form headings, component names): with the sentence embedding added (scaled by
``embedding_weight``) accuracy was no better, while every dataset build had to embed all its
issues (minutes on 2 cores). So :data:`EMBEDDING_WEIGHT` is 0 by default and the embedding is
an option. Training needs
scikit-learn; a saved model (``model.npz`` without pickles + ``manifest.json``) loads and predicts
with numpy and the embedder alone.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from adaptune.errors import AdaptuneError
from adaptune.memory.embed import Embedder
from adaptune.triage.features import TfidfFeatures
from adaptune.triage.scores import triage_scores
from adaptune.types import Example

log = logging.getLogger(__name__)
EMBEDDING_WEIGHT = 0.0
"""Scale of the (unit) sentence embedding beside the (unit) tf-idf vector; 0 switches it off."""
HEAD_CHARS = 600
"""Only the head of a text is embedded: the similar-issue index embeds the same head, so a
ticket costs one forward pass of the sentence model, not two."""
C = 10.0
"""Inverse regularisation strength of the logistic regression (chosen on the real dumps)."""
MIN_EXAMPLES = 6
MIN_PER_LABEL = 2
"""Labels with fewer examples are left out: one example teaches nothing."""
HOLDOUT = 0.2


class TriageError(AdaptuneError):
    """A saved triage classifier is missing or unreadable."""


class TriageModel:
    """A trained classifier over a fixed set of labels."""

    def __init__(
        self,
        labels: Sequence[str],
        coef: np.ndarray,
        intercept: np.ndarray,
        features: TfidfFeatures,
        embedder: Embedder | None,
        embedding_weight: float = EMBEDDING_WEIGHT,
        manifest: dict[str, Any] | None = None,
    ) -> None:
        self.labels: tuple[str, ...] = tuple(labels)
        self.coef = np.asarray(coef, dtype=np.float32)
        self.intercept = np.asarray(intercept, dtype=np.float32)
        self.features = features
        self.embedder = embedder
        self.embedding_weight = embedding_weight
        self.manifest: dict[str, Any] = manifest or {}
        self._dim = self.coef.shape[1] - len(features)

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """``(n, labels)`` unnormalised scores."""
        out = np.tile(self.intercept, (len(texts), 1))
        if self._dim and texts:
            if self.embedder is None:
                raise TriageError("This triage model uses embeddings: load it with an embedder.")
            emb = self.embedder.encode([t[:HEAD_CHARS] for t in texts])
            out += self.embedding_weight * emb @ self.coef[:, : self._dim].T
        for row, (idx, val) in enumerate(self.features.transform(texts)):
            out[row] += self.coef[:, self._dim + idx] @ val.astype(np.float32)
        return out

    def predict(self, texts: Sequence[str]) -> list[dict]:
        """``[{"label", "scores": {label: probability}}]``, the probabilities summing to 1."""
        z = self.logits(texts).astype(np.float64)
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        return [
            {
                "label": self.labels[int(row.argmax())],
                "scores": {lab: float(v) for lab, v in zip(self.labels, row, strict=True)},
            }
            for row in p
        ]

    def save(self, folder: Path) -> None:
        """Write ``model.npz`` and ``manifest.json`` into ``folder``, atomically."""
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        try:
            np.savez(
                tmp / "model.npz",
                coef=self.coef,
                intercept=self.intercept,
                idf=self.features.idf,
                vocabulary=np.array(self.features.vocabulary, dtype=str),
                labels=np.array(self.labels, dtype=str),
            )
            manifest = {**self.manifest, "embedding_weight": self.embedding_weight}
            manifest["labels"] = list(self.labels)
            manifest["embedding_dim"] = self._dim
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
            _swap_in(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def load(cls, folder: Path, embedder: Embedder) -> TriageModel:
        """The model saved in ``folder``."""
        try:
            manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
            with np.load(folder / "model.npz", allow_pickle=False) as z:
                arrays = {k: z[k] for k in ("coef", "intercept", "idf", "vocabulary", "labels")}
        except FileNotFoundError:
            raise TriageError(
                f"{folder} holds no triage classifier; rebuild the dataset "
                "(`adaptune dataset build`) to train one."
            ) from None
        except (OSError, ValueError, KeyError) as exc:
            raise TriageError(
                f"{folder}: the triage classifier is corrupt ({exc}); delete the folder and "
                "rebuild the dataset (`adaptune dataset build`)."
            ) from None
        features = TfidfFeatures(arrays["vocabulary"].tolist(), arrays["idf"])
        dim = arrays["coef"].shape[1] - len(features)
        if dim not in (0, embedder.dim):
            raise TriageError(
                f"{folder}: trained with {dim}-dimensional embeddings, the embedder gives "
                f"{embedder.dim}; rebuild the dataset to retrain it."
            )
        return cls(
            arrays["labels"].tolist(),
            arrays["coef"],
            arrays["intercept"],
            features,
            embedder,
            float(manifest.get("embedding_weight", EMBEDDING_WEIGHT)),
            manifest,
        )


def _swap_in(tmp: Path, folder: Path) -> None:
    """Replace ``folder`` by ``tmp`` (a folder cannot be renamed over a non-empty one)."""
    old = None
    if folder.exists():
        old = folder.with_name(f".{folder.name}-old-{os.getpid()}")
        os.replace(folder, old)
    os.replace(tmp, folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _fit(
    texts: Sequence[str],
    labels: Sequence[str],
    embedder: Embedder | None,
    weight: float,
    seed: int,
) -> TriageModel:
    from scipy.sparse import csr_matrix, hstack
    from sklearn.linear_model import LogisticRegression

    features = TfidfFeatures.fit(texts)
    x = features.to_csr(features.transform(texts))
    if embedder is not None and weight:
        emb = embedder.encode([t[:HEAD_CHARS] for t in texts]) * weight
        x = hstack([csr_matrix(emb.astype(np.float64)), x]).tocsr()
    lr = LogisticRegression(C=C, class_weight="balanced", max_iter=3000, random_state=seed)
    lr.fit(x, list(labels))
    coef, intercept = lr.coef_, lr.intercept_
    if len(lr.classes_) == 2:  # scikit-learn keeps one row for two classes: softmax of [0, z]
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept])
    use = embedder if weight else None
    return TriageModel(lr.classes_.tolist(), coef, intercept, features, use, weight)


def _split(examples: list[Example], holdout: float) -> tuple[list[Example], list[Example]]:
    """The build's own held-out split, else the latest ``holdout`` share by time."""
    held = [e for e in examples if e.split == "heldout"]
    if held:
        return [e for e in examples if e.split != "heldout"], held
    ordered = sorted(examples, key=lambda e: (e.known_at, e.id))
    cut = len(ordered) - round(len(ordered) * holdout)
    return ordered[:cut], ordered[cut:]


def _heldout_metrics(examples, embedder, weight, seed, holdout) -> dict[str, Any] | None:
    train, held = _split(examples, holdout)
    if not held or len({e.answer for e in train}) < 2:
        return None
    model = _fit([e.question for e in train], [e.answer for e in train], embedder, weight, seed)
    pred = [p["label"] for p in model.predict([e.question for e in held])]
    scores = triage_scores([e.answer for e in held], pred)
    return {
        "accuracy": scores["accuracy"],
        "macro_f1": scores["macro_f1"],
        "train": len(train),
        "heldout": len(held),
    }


def train_triage(
    examples: Sequence[Example],
    embedder: Embedder,
    seed: int = 0,
    holdout: float = HOLDOUT,
    embedding_weight: float = EMBEDDING_WEIGHT,
) -> TriageModel | None:
    """A classifier of ``examples`` (``question`` → ``answer``), or ``None`` when there are
    fewer than two labels with enough examples.

    With ``holdout`` > 0 it is first trained without the held-out examples (the build's
    ``heldout`` split, else the latest share by time) to measure accuracy and macro-F1, then
    refitted on everything; the manifest records those held-out metrics.
    """
    counts = Counter(e.answer for e in examples)
    keep = {lab for lab, n in counts.items() if n >= MIN_PER_LABEL}
    rows = [e for e in examples if e.answer in keep]
    if len(keep) < 2 or len(rows) < MIN_EXAMPLES:
        log.info("triage: %d examples over %d labels, too few to train", len(rows), len(keep))
        return None
    metrics = _heldout_metrics(rows, embedder, embedding_weight, seed, holdout) if holdout else None
    model = _fit(
        [e.question for e in rows], [e.answer for e in rows], embedder, embedding_weight, seed
    )
    model.manifest = {
        "kind": "tfidf+embedding logistic regression" if embedding_weight else "tfidf logistic",
        "counts": dict(sorted(Counter(e.answer for e in rows).items())),
        "dropped_labels": sorted(set(counts) - keep),
        "examples": len(rows),
        "heldout_metrics": metrics,
        "seed": seed,
        "C": C,
        "vocabulary": len(model.features),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return model
