"""The evaluation report: every section rendered, self-contained, user text escaped, gaps noted."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from adaptune.evaluate.plots import fmt3
from adaptune.evaluate.report import build_context, ci_text, render_report
from browser import chromium, screenshot

SECTIONS = (
    "summary",
    "answer-modes",
    "paired",
    "r-matrices",
    "nll-per-window",
    "cost",
    "bwt-fwt",
    "memory-probes",
    "triage",
    "duplicates",
    "cross-domain",
    "samples",
)
WINDOWS = ["2021Q1", "2021Q2", "2021Q3", "2021Q4", "2022Q1", "2022Q2"]
STRATEGIES = ("adaptive", "adaptive-no-replay", "from-base", "cumulative", "style-control")
XSS = "<script>alert(1)</script>"


def _ci(rng: np.random.Generator, mean: float, spread: float = 0.05) -> list[float]:
    return [mean, mean - spread * rng.uniform(0.5, 1.5), mean + spread * rng.uniform(0.5, 1.5)]


def _strategy(rng: np.random.Generator, k: int) -> dict[str, Any]:
    """An R matrix that improves on the diagonal and forgets a little below it."""
    n = len(WINDOWS)
    r = [
        [round(2.4 - 0.3 * (i >= j) + 0.04 * (i - j) * (i > j) + 0.02 * k, 4) for j in range(n)]
        for i in range(n)
    ]
    r[0][n - 1] = None  # a cell that was not measured
    r_ci = [[[x - 0.05, x + 0.05] if x is not None else None for x in row] for row in r]
    return {
        "R": r,
        "R_ci": r_ci,
        "acc": float(np.mean([x for x in r[-1] if x is not None])),
        "bwt": -0.04 * k,
        "fwt": 0.01 * (2 - k),
        "cost": {"tokens": 200_000 * (k + 1) ** 2, "seconds": 61.5 * (k + 1), "examples": 900},
        "versions": [f"vllm-v{i + 1}" for i in range(n)],
    }


MODES = ("base", "base+retrieval", "adapter", "adapter+retrieval", "retrieval-baseline")
FIXED: dict[str, Any] = {
    "id": "eval-3f2a9c",
    "created_at": "2025-11-25T04:30:00+00:00",
    "domain": "vllm",
    "build": "vllm-b7",
    "base_model": "Qwen/Qwen2.5-0.5B-Instruct",
    "machine": "1× H100 80GB, 16 CPU cores",
    "command": "adaptune evaluate vllm --build vllm-b7 --out reports/",
    "windows": WINDOWS,
    "base": {
        "nll_per_window": [2.41, 2.44, 2.39, 2.47, 2.5, 2.46],
        "nll_ci": [[2.36, 2.46]] * len(WINDOWS),  # 2.5 lies outside: bars must not break
    },
    "paired": [
        {
            "a": "adapter+retrieval",
            "b": "base+retrieval",
            "metric": "fix_acc1",
            "diff": [0.061, 0.021, 0.102],
        },
        {"a": "adapter", "b": "base", "metric": "nll", "diff": [-0.21, -0.26, -0.15]},
        {"a": "adapter", "b": "style-control", "metric": "rouge_l", "diff": [0.004, -0.011, 0.019]},
    ],
    "memory_probes": {
        "adaptive": {"hit_rate_per_window": [[0.9, 0.1], [0.8, 0.85]], "bwt": -0.1},
        "from-base": {"hit_rate_per_window": [[0.9, 0.1], [0.5, 0.9]], "bwt": -0.4},
    },
    "triage": {
        "accuracy": 0.712,
        "macro_f1": 0.634,
        "labels": ["bug", "feature", "question", "docs"],
        "confusion": [[40, 3, 5, 1], [4, 22, 2, 0], [6, 1, 18, 2], [1, 0, 2, 9]],
        "baseline": {"name": "tf-idf + logistic regression", "accuracy": 0.655, "macro_f1": 0.571},
    },
    "duplicates": {"recall_at_k": {"5": 0.62, "1": 0.38, "10": 0.71}},
    "cross_domain": [{"from": "vllm", "to": "llama.cpp", "nll_base": 2.52, "nll_adapter": 2.47}],
    "verdict": [
        "Adapter+retrieval names the right fix more often than base+retrieval (+6.1 points).",
        "Adaptive does NOT beat cumulative retraining on ACC; it costs 16× fewer tokens.",
    ],
}


def _answer_modes(rng: np.random.Generator) -> dict[str, Any]:
    """Every answer mode with every metric, each a ``[mean, lo, hi]``."""
    return {
        m: {
            "nll": _ci(rng, 2.4 - 0.1 * k),
            "rouge_l": _ci(rng, 0.2 + 0.02 * k, 0.01),
            "embed_sim": _ci(rng, 0.6 + 0.01 * k, 0.01),
            "fix_acc1": _ci(rng, 0.1 + 0.03 * k, 0.02),
            "fix_mrr": _ci(rng, 0.2 + 0.03 * k, 0.02),
        }
        for k, m in enumerate((*MODES, "style-control"))
    }


def _samples(n: int) -> list[dict[str, str]]:
    """Held-out answers side by side; the first base answer is a script tag."""
    return [
        {
            "issue": f"vllm#{1000 + i}",
            "question": f"CUDA OOM when loading the model with tensor_parallel_size={i}",
            "reference": "Lower gpu_memory_utilization to 0.85; fixed in #2310.",
            "base": "Try restarting your computer." if i else XSS,
            "adaptive": "Set --gpu-memory-utilization 0.85 (see #2310).",
            "retrieval": "Duplicate of #2290: reduce max_num_seqs.",
        }
        for i in range(n)
    ]


def full_metrics() -> dict[str, Any]:
    """A synthetic metrics dict with every part present (a fresh copy each call)."""
    rng = np.random.default_rng(0)
    return {
        **copy.deepcopy(FIXED),
        "strategies": {name: _strategy(rng, k) for k, name in enumerate(STRATEGIES)},
        "answer_modes": _answer_modes(rng),
        "samples": _samples(3),
    }


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The full synthetic report, rendered once for the module."""
    path = render_report(full_metrics(), tmp_path_factory.mktemp("report"))
    return path, path.read_text(encoding="utf-8")


def test_every_section_in_order_with_inlined_images(report: tuple[Path, str]) -> None:
    path, html = report
    assert path.name == "report.html"
    ids = re.findall(r'<section id="([^"]+)">\s*<h2>', html)
    assert ids == list(SECTIONS)
    assert '<footer id="footer">' in html
    figures = len(STRATEGIES) + 5  # R maps, NLL per window, cost, 2 probe maps, confusion
    assert html.count('<img src="data:image/png;base64,') == figures
    assert "not measured" not in html  # every part is present
    assert "adaptune evaluate vllm --build vllm-b7" in html and "1× H100 80GB" in html


def test_report_is_self_contained(report: tuple[Path, str]) -> None:
    _, html = report
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "@import" not in html and "url(" not in html
    assert not list(report[0].parent.glob(".report-*"))  # the atomic write left no temp file


def test_user_text_is_escaped(report: tuple[Path, str]) -> None:
    _, html = report
    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_numbers_and_readings(report: tuple[Path, str]) -> None:
    _, html = report
    assert "+0.0610 [+0.0210, +0.102]" in html  # paired diff, three significant digits
    assert "adapter+retrieval better" in html
    assert "adapter better" in html  # NLL: a negative difference favours a
    assert "no clear difference" in html
    assert html.index(">1</th>") < html.index(">5</th>") < html.index(">10</th>")  # recall by k


@pytest.mark.parametrize(
    ("value", "signed", "text"),
    [
        (2.41234, False, "2.41"),
        (0.1, False, "0.100"),
        (0.0456789, True, "+0.0457"),
        (-0.21, True, "-0.210"),
        (123.0, False, "123"),
        (12345.6, False, "12,300"),
        (3_200_000, False, "3,200,000"),
        (900, False, "900"),
        (0.00001234, False, "1.23e-05"),
        (0, False, "0"),
        (None, False, "—"),
        (float("nan"), False, "—"),
    ],
)
def test_fmt3(value: float | None, signed: bool, text: str) -> None:
    assert fmt3(value, signed) == text


def test_ci_text_tolerates_gaps() -> None:
    assert ci_text([1.0, 0.9, 1.1]) == "1.00 [0.900, 1.10]"
    assert ci_text([1.0, None, None]) == "1.00"
    assert ci_text(None) is None and ci_text([None, 1, 2]) is None


def test_missing_parts_say_not_measured(tmp_path: Path) -> None:
    html = render_report({}, tmp_path).read_text(encoding="utf-8")
    ids = re.findall(r'<section id="([^"]+)">', html)
    assert ids == list(SECTIONS)
    assert html.count("not measured: this run") == len(SECTIONS)
    assert "data:image/png" not in html


def test_partial_metrics_render_with_notes(tmp_path: Path) -> None:
    m = full_metrics()
    m["answer_modes"]["retrieval-baseline"]["nll"] = None  # retrieval alone has no likelihood
    m["strategies"]["from-base"] = {"acc": 2.3}  # no R, no cost, no transfers
    m["triage"] = {"accuracy": 0.7}  # no confusion, no baseline
    m["cross_domain"] = [{"from": "vllm", "to": "jira", "nll_base": 2.5}]
    for key in ("paired", "memory_probes", "samples"):
        del m[key]
    ctx = build_context(m)
    assert "from-base" not in ctx["r_maps"] and "adaptive" in ctx["r_maps"]
    html = render_report(m, tmp_path).read_text(encoding="utf-8")
    cells = re.search(r'<section id="answer-modes">.*?</section>', html, re.S).group(0)
    assert cells.count('class="nm">not measured') == 1
    assert html.count("not measured: this run") == 3
    assert "confusion matrix: " in html


@pytest.mark.skipif(chromium() is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_headless_chromium_screenshot(report: tuple[Path, str], tmp_path: Path) -> None:
    png = tmp_path / "report.png"
    screenshot(report[0], png, "1280,4000", tmp_path / "profile")
    assert png.exists(), "chromium wrote no screenshot"
    assert png.stat().st_size > 50_000, "the screenshot is too small to hold the report"
    image = pytest.importorskip("PIL.Image")
    with image.open(png) as shot:
        gray = np.asarray(shot.convert("L"), dtype=float)
    assert gray.shape == (4000, 1280)
    assert gray.std() > 20, "the screenshot is blank"
