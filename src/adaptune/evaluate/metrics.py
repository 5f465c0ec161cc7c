"""Continual-learning metrics and bootstrap intervals: pure numpy, checkable by hand.

``R[i][j]`` is the metric of the model after training window ``i``, measured on window ``j``'s
held-out set. ACC, BWT and FWT follow Lopez-Paz & Ranzato, *Gradient Episodic Memory for
Continual Learning* (NeurIPS 2017), with ``T`` windows and ``b_j`` the base model on window ``j``::

    ACC = 1/T       Σ_j        R[T-1][j]
    BWT = 1/(T-1)   Σ_{j<T-1}  R[T-1][j] − R[j][j]
    FWT = 1/(T-1)   Σ_{j>0}    R[j-1][j] − b_j

Sign convention: the *transfers* (BWT, FWT) are always reported so that **positive = better**.
For a higher-is-better metric (accuracy, MRR) that is the formula above; for a lower-is-better
one (answer NLL, perplexity) pass ``lower_is_better=True`` and the differences are negated, so
BWT < 0 still means forgetting and FWT > 0 still means the adapter helps on the next, unseen
window. ACC is a level, not a difference: it stays in the metric's own units (mean NLL for NLL).
A missing cell (NaN) that a formula needs makes the result NaN instead of silently shrinking the
average.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

BOOT_CHUNK = 256
"""Bootstrap resamples drawn at once (bounds memory at BOOT_CHUNK × n indices)."""


def cl_matrix(results: Mapping[tuple[int, int], float], n: int) -> np.ndarray:
    """The ``n × n`` matrix ``R[i][j]`` from ``{(i, j): metric}``; NaN where not measured."""
    matrix = np.full((n, n), np.nan)
    for (i, j), value in results.items():
        if not (0 <= i < n and 0 <= j < n):
            raise ValueError(f"cell ({i}, {j}) is outside a {n} × {n} matrix")
        matrix[i, j] = float(value)
    return matrix


def acc(matrix: np.ndarray) -> float:
    """Average metric of the final model over every window (in the metric's own units)."""
    r = _square(matrix)
    return float(np.mean(r[-1]))


def bwt(matrix: np.ndarray, lower_is_better: bool = False) -> float:
    """Backward transfer: how much later training changed earlier windows (positive = better).

    NaN with a single window (nothing came later).
    """
    r = _square(matrix)
    t = len(r)
    if t < 2:
        return math.nan
    diffs = [r[t - 1, j] - r[j, j] for j in range(t - 1)]
    return _signed(diffs, lower_is_better)


def fwt(matrix: np.ndarray, base: Sequence[float], lower_is_better: bool = False) -> float:
    """Forward transfer: the previous window's model on a window against the base model on it.

    ``base[j]`` is the base model's metric on window ``j`` (``base[0]`` is not used). Positive =
    the adapter trained so far beats the base model on the window it has not seen yet. NaN with
    a single window.
    """
    r = _square(matrix)
    t = len(r)
    if len(base) != t:
        raise ValueError(f"base has {len(base)} values for {t} windows")
    if t < 2:
        return math.nan
    diffs = [r[j - 1, j] - float(base[j]) for j in range(1, t)]
    return _signed(diffs, lower_is_better)


def summary(
    matrix: np.ndarray, base: Sequence[float] | None = None, lower_is_better: bool = False
) -> dict[str, float]:
    """ACC, BWT and (with ``base``) FWT of one matrix, under the sign convention above."""
    out = {"acc": acc(matrix), "bwt": bwt(matrix, lower_is_better)}
    if base is not None:
        out["fwt"] = fwt(matrix, base, lower_is_better)
    return out


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the mean and its percentile-bootstrap ``1 − alpha`` interval.

    Resamples the values with replacement ``n_boot`` times (seeded, so reports are
    reproducible). NaNs everywhere for no values; a single value gives a zero-width interval.
    """
    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0:
        return math.nan, math.nan, math.nan
    if not 0.0 < alpha < 1.0 or n_boot < 1:
        raise ValueError("bootstrap_ci needs 0 < alpha < 1 and n_boot ≥ 1")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for start in range(0, n_boot, BOOT_CHUNK):
        size = min(BOOT_CHUNK, n_boot - start)
        means[start : start + size] = x[rng.integers(0, x.size, (size, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(x.mean()), float(lo), float(hi)


def paired_diff_ci(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Bootstrap interval of ``mean(a − b)`` over paired per-example values (same examples).

    Pairing removes the between-example spread, so a small but consistent shift shows up; an
    interval that excludes 0 is a difference at level ``alpha``.
    """
    x, y = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"paired values need the same examples: {x.size} vs {y.size}")
    return bootstrap_ci(x - y, n_boot=n_boot, alpha=alpha, seed=seed)


def _square(matrix: np.ndarray) -> np.ndarray:
    r = np.asarray(matrix, dtype=float)
    if r.ndim != 2 or r.shape[0] != r.shape[1] or r.shape[0] == 0:
        raise ValueError(f"R must be a non-empty square matrix, not shape {r.shape}")
    return r


def _signed(diffs: Sequence[float], lower_is_better: bool) -> float:
    mean = float(np.mean(diffs))
    return -mean if lower_is_better else mean
