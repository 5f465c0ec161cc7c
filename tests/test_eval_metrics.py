"""Evaluation maths checked by hand: CL matrix, ACC/BWT/FWT, bootstrap, triage, recall, ROUGE-L."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adaptune.evaluate import (
    acc,
    bootstrap_ci,
    bwt,
    cl_matrix,
    fwt,
    paired_diff_ci,
    rouge_l,
    summary,
)
from adaptune.evaluate.classify import recall_at_k
from adaptune.triage.scores import triage_scores

# Accuracy-like (higher is better): R[i][j] after training window i, tested on window j.
R = np.array([[0.5, 0.2, 0.1], [0.4, 0.6, 0.3], [0.3, 0.5, 0.7]])
BASE = [0.1, 0.15, 0.2]
# NLL-like (lower is better).
N = np.array([[2.0, 3.0, 3.2], [2.2, 1.8, 3.0], [2.5, 2.0, 1.5]])
N_BASE = [3.0, 3.4, 3.5]


def test_cl_matrix_fills_cells_and_leaves_nan_where_missing() -> None:
    m = cl_matrix({(0, 0): 1.0, (1, 0): 2.0, (1, 1): 3.0}, 2)
    assert m[0, 0] == 1.0 and m[1, 0] == 2.0 and m[1, 1] == 3.0 and math.isnan(m[0, 1])
    with pytest.raises(ValueError, match="outside"):
        cl_matrix({(2, 0): 1.0}, 2)


def test_acc_bwt_fwt_for_a_higher_is_better_metric() -> None:
    assert acc(R) == pytest.approx((0.3 + 0.5 + 0.7) / 3)
    assert bwt(R) == pytest.approx(((0.3 - 0.5) + (0.5 - 0.6)) / 2)  # -0.15: forgetting
    assert fwt(R, BASE) == pytest.approx(((0.2 - 0.15) + (0.3 - 0.2)) / 2)  # 0.075: helps


def test_transfers_flip_sign_for_a_lower_is_better_metric() -> None:
    assert acc(N) == pytest.approx(2.0)  # a level, in NLL units
    # NLL on windows 0 and 1 rose by 0.5 and 0.2 after later training: forgetting, negative.
    assert bwt(N, lower_is_better=True) == pytest.approx(-0.35)
    # The previous window's adapter beats the base by 0.4 and 0.5 nats: helps, positive.
    assert fwt(N, N_BASE, lower_is_better=True) == pytest.approx(0.45)
    assert bwt(N, lower_is_better=True) == pytest.approx(bwt(-N))
    assert summary(N, N_BASE, lower_is_better=True) == pytest.approx(
        {"acc": 2.0, "bwt": -0.35, "fwt": 0.45}
    )


def test_edge_cases_of_the_cl_metrics() -> None:
    one = np.array([[0.4]])
    assert acc(one) == pytest.approx(0.4) and math.isnan(bwt(one)) and math.isnan(fwt(one, [0]))
    holed = R.copy()
    holed[0, 0] = np.nan
    assert math.isnan(bwt(holed)) and not math.isnan(acc(holed))  # a needed cell is missing
    with pytest.raises(ValueError, match="base has"):
        fwt(R, [0.1])
    with pytest.raises(ValueError, match="square"):
        acc(np.zeros((2, 3)))
    assert "fwt" not in summary(R)


def test_bootstrap_ci_contains_the_mean_and_shrinks_with_more_examples() -> None:
    rng = np.random.default_rng(1)
    small, large = rng.normal(1.0, 1.0, 20), rng.normal(1.0, 1.0, 2000)
    mean, lo, hi = bootstrap_ci(small)
    assert lo < mean < hi and mean == pytest.approx(small.mean())
    _, lo2, hi2 = bootstrap_ci(large)
    assert lo2 < 1.0 < hi2 and (hi2 - lo2) < (hi - lo) / 5
    assert bootstrap_ci(small, seed=3) == bootstrap_ci(small, seed=3)
    assert bootstrap_ci([2.0]) == (2.0, 2.0, 2.0)
    assert all(math.isnan(x) for x in bootstrap_ci([]))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=40))
def test_bootstrap_interval_lies_within_the_data(values: list[float]) -> None:
    _, lo, hi = bootstrap_ci(values, n_boot=200)
    tol = 1e-9 * (1 + max(abs(v) for v in values))
    assert min(values) - tol <= lo <= hi <= max(values) + tol


def test_paired_ci_excludes_zero_for_a_clear_shift_and_includes_it_for_noise() -> None:
    rng = np.random.default_rng(0)
    before = rng.normal(3.0, 1.0, 200)  # large spread between examples
    after = before - 0.1 + rng.normal(0.0, 0.05, 200)  # small, consistent improvement
    mean, lo, hi = paired_diff_ci(before, after)
    assert mean == pytest.approx(0.1, abs=0.02) and lo > 0
    noise_a, noise_b = rng.normal(0, 1, 200), rng.normal(0, 1, 200)
    _, lo, hi = paired_diff_ci(noise_a, noise_b)
    assert lo < 0 < hi
    with pytest.raises(ValueError, match="same examples"):
        paired_diff_ci([1.0, 2.0], [1.0])


def test_triage_scores_against_a_hand_computation() -> None:
    y_true = ["bug", "bug", "bug", "docs", "docs", "question"]
    y_pred = ["bug", "bug", "docs", "docs", "bug", "bug"]
    got = triage_scores(y_true, y_pred, labels=["bug", "docs", "question"])
    # bug: TP 2, FP 2, FN 1 → 4/7; docs: TP 1, FP 1, FN 1 → 1/2; question: TP 0 → 0.
    assert got["accuracy"] == pytest.approx(3 / 6)
    assert got["macro_f1"] == pytest.approx((4 / 7 + 1 / 2 + 0) / 3)
    assert got["confusion"] == [[2, 1, 0], [1, 1, 0], [1, 0, 0]]
    assert got["labels"] == ["bug", "docs", "question"]
    assert triage_scores(["a", "b"], ["a", "a"])["labels"] == ["a", "b"]  # default: seen labels
    with pytest.raises(ValueError):
        triage_scores(["a"], [])


def test_recall_at_k() -> None:
    ranked = [["#3", "#1", "#2"], ["#5", "#4"], ["#9"]]
    truth = ["#1", "#4", "#8"]
    assert recall_at_k(ranked, truth, 1) == 0.0
    assert recall_at_k(ranked, truth, 2) == pytest.approx(2 / 3)
    assert recall_at_k(ranked, truth, 10) == pytest.approx(2 / 3)
    assert math.isnan(recall_at_k([], [], 1))
    with pytest.raises(ValueError):
        recall_at_k(ranked, truth, 0)


@pytest.mark.parametrize(
    ("pred", "ref", "want"),
    [
        ("upgrade datasets to 2.14", "upgrade datasets to 2.14", 1.0),
        ("", "upgrade datasets", 0.0),
        ("set the cache", "pass split train", 0.0),
        # LCS "pass split" = 2 of 3 and 2 of 4: F1 = 2·(2/3)·(1/2) / (2/3 + 1/2) = 4/7
        ("Pass the split", "pass split='train' please", 4 / 7),
        # Order matters: LCS of "a b c" and "c b a" is one word.
        ("a b c", "c b a", 1 / 3),
        ("UPGRADE, Datasets!", "upgrade datasets", 1.0),  # case and punctuation ignored
    ],
)
def test_rouge_l(pred: str, ref: str, want: float) -> None:
    assert rouge_l(pred, ref) == pytest.approx(want)
