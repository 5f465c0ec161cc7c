"""The evaluation report's figures, drawn with matplotlib's Agg canvas and returned as data URIs.

Every function here is pure: parts of the metrics dict (see ``report``) in, a
``data:image/png;base64,...`` string out (``None`` when there is nothing to draw), so the report
stays one self-contained HTML file. No pyplot: figures are built directly on an Agg canvas, which
keeps no global state and needs no display. Missing values (``None`` or NaN) are grey cells or
gaps in a line. ``fmt3`` is the one number format of the report.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, LogLocator, NullFormatter

Cell = float | int | None
Series = tuple[Sequence[Cell], Sequence[Sequence[float] | None] | None]
"""A line to plot: values per window and, optionally, a ``[lo, hi]`` interval per value."""

T = TypeVar("T")

DPI = 110
MISSING = "#dddddd"


def fmt3(x: float | int | None, signed: bool = False) -> str:
    """A number to three significant digits ("1.23", "0.0456", "12,300"); "—" when missing."""
    if not measured(x):
        return "—"
    sign = "+" if signed and x > 0 else ""
    if isinstance(x, int) and abs(x) < 1000:
        return f"{sign}{x}"
    if x == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(x)))
    if magnitude >= 3:
        return f"{sign}{round(x, 2 - magnitude):,.0f}"
    if magnitude < -3:
        return f"{sign}{x:.2e}"
    return sign + f"{x:#.3g}".rstrip(".")


def measured(x: object) -> bool:
    """Whether a metric holds a number: not ``None``, not NaN or infinite, not a bool."""
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _data_uri(fig: Figure) -> str:
    """Render a figure to PNG on the Agg canvas and encode it; no timestamp, so bytes are stable."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _masked(matrix: Sequence[Sequence[Cell]]) -> np.ma.MaskedArray:
    """A ragged list of rows with ``None`` holes as a rectangular masked float array."""
    width = max((len(row) for row in matrix), default=0)
    grid = np.full((len(matrix), width), np.nan)
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            if measured(value):
                grid[i, j] = float(value)
    return np.ma.masked_invalid(grid)


def _annotate(ax, grid: np.ma.MaskedArray, image, cells: Sequence[Sequence[Cell]]) -> None:
    """Write each cell's value in it, black on light colours and white on dark ones."""
    for i, row in enumerate(cells):
        for j, value in enumerate(row):
            if grid.mask is not np.ma.nomask and grid.mask[i, j]:
                ax.text(j, i, "—", ha="center", va="center", color="#666666", fontsize=9)
                continue
            r, g, b = to_rgb(image.cmap(image.norm(grid[i, j])))
            color = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
            ax.text(j, i, fmt3(value), ha="center", va="center", color=color, fontsize=9)


def heatmap(
    matrix: Sequence[Sequence[Cell]],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    *,
    title: str,
    axis_labels: tuple[str, str],
    cbar_label: str,
    cmap: str = "viridis",
    limits: tuple[float | None, float | None] = (None, None),
) -> str:
    """A labelled heat-map with each cell's value printed in it; ``None`` cells are grey."""
    grid = _masked(matrix)
    rows, cols = grid.shape
    # Small cells, so that two maps side by side in the page are shown near their real size.
    size = (2.0 + 0.55 * cols, max(3.0, 1.5 + 0.42 * rows))
    fig = Figure(figsize=size, layout="constrained")
    ax = fig.add_subplot()
    palette = colormaps[cmap].with_extremes(bad=MISSING)
    image = ax.imshow(grid, cmap=palette, vmin=limits[0], vmax=limits[1], aspect="auto")
    _annotate(ax, grid, image, matrix)
    ax.set_xticks(range(cols), labels=list(col_labels)[:cols], rotation=45, ha="right")
    ax.set_yticks(range(rows), labels=list(row_labels)[:rows])
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(title, fontsize=11)
    fig.colorbar(image, ax=ax, shrink=0.9).set_label(cbar_label, fontsize=9)
    return _data_uri(fig)


def _interval(ci: object) -> bool:
    """Whether ``ci`` is a usable ``[lo, hi]`` pair."""
    return isinstance(ci, list | tuple) and len(ci) >= 2 and measured(ci[0]) and measured(ci[1])


def _errorbar(ax, xs: list[int], series: Series, label: str, style: dict) -> None:
    """One line with error bars from its intervals, skipping missing points."""
    values, cis = series
    cis = list(cis or []) + [None] * len(values)
    points = [(x, v, cis[x]) for x, v in zip(xs, values, strict=False)]
    points = [(x, float(v), ci) for x, v, ci in points if measured(v)]
    if not points:
        return
    bounds = [(ci[0], ci[1]) if _interval(ci) else (v, v) for _, v, ci in points]
    # Clamped at 0: a percentile interval need not contain the mean it is reported with.
    lower = [max(0.0, v - lo) for (_, v, _), (lo, _) in zip(points, bounds, strict=True)]
    upper = [max(0.0, hi - v) for (_, v, _), (_, hi) in zip(points, bounds, strict=True)]
    ax.errorbar(
        [x for x, _, _ in points],
        [v for _, v, _ in points],
        yerr=[lower, upper],
        label=label,
        capsize=3,
        marker="o",
        markersize=4,
        **style,
    )


def window_lines(
    windows: Sequence[str], panels: Sequence[tuple[str, dict[str, Series]]], ylabel: str
) -> str:
    """Side-by-side panels of one line per series across windows, with CI error bars."""
    fig = Figure(figsize=(5.2 * len(panels), 3.8), layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    xs = list(range(len(windows)))
    for ax, (title, lines) in zip(axes, panels, strict=True):
        for k, (label, series) in enumerate(lines.items()):
            style = {"color": "black", "linestyle": "--"} if label == "base" else {"color": f"C{k}"}
            _errorbar(ax, xs, series, label, style)
        ax.set_xticks(xs, labels=list(windows), rotation=45, ha="right")
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("evaluated on window")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(ylabel)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=min(len(names), 6), fontsize=9)
    return _data_uri(fig)


def cost_scatter(points: Sequence[tuple[str, float, float]], xlabel: str, ylabel: str) -> str:
    """A labelled scatter of cost (x, log scale when it spans a decade) against quality (y)."""
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    for k, (name, cost, quality) in enumerate(points):
        ax.scatter([cost], [quality], s=60, color=f"C{k}", zorder=3)
        ax.annotate(name, (cost, quality), xytext=(6, 4), textcoords="offset points", fontsize=9)
    costs = [c for _, c, _ in points if c > 0]
    if costs and max(costs) / min(costs) >= 10:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 200k, 1M: no overlapping exponents
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.margins(x=0.2, y=0.2)
    return _data_uri(fig)


def labels(names: Sequence[str], n: int, prefix: str = "w") -> list[str]:
    """``n`` axis labels: the given names, padded with positions when there are too few."""
    return list(names[:n]) + [f"{prefix}{i + 1}" for i in range(len(names), n)]


def _cell(matrix: Sequence[Sequence[T]] | None, i: int, j: int) -> T | None:
    """``matrix[i][j]``, or ``None`` when the matrix is missing or ragged there."""
    try:
        return matrix[i][j] if matrix else None
    except IndexError:
        return None


def _width(matrix: Sequence[Sequence[object]]) -> int:
    """The longest row's length: metrics may hold ragged matrices."""
    return max((len(row) for row in matrix), default=0)


def r_maps(strategies: dict[str, Any], windows: Sequence[str]) -> dict[str, str]:
    """One heat-map of R per strategy that has one, on one shared colour scale."""
    measured_r = {k: v["R"] for k, v in strategies.items() if v.get("R")}
    values = [x for r in measured_r.values() for row in r for x in row if measured(x)]
    if not values:
        return {}
    return {
        name: heatmap(
            r,
            labels(windows, len(r)),
            labels(windows, _width(r)),
            title=name,
            axis_labels=("evaluated on window", "after training on window"),
            cbar_label="answer NLL (lower is better)",
            cmap="viridis_r",  # so that brighter is better in every heat-map of the report
            limits=(min(values), max(values)),
        )
        for name, r in measured_r.items()
    }


def nll_per_window(strategies: dict[str, Any], base: Any, windows: Sequence[str]) -> str | None:
    """NLL per window with CIs: right after learning it (R[j][j]), and after the last window."""
    with_r = {k: v for k, v in strategies.items() if v.get("R")}
    base = base if isinstance(base, dict) else {}
    base_nll = base.get("nll_per_window")
    if not with_r and not base_nll:
        return None
    n = max([len(windows), len(base_nll or [])] + [_width(v["R"]) for v in with_r.values()])
    just: dict[str, Series] = {}
    final: dict[str, Series] = {}
    for name, s in with_r.items():
        r, ci, last = s["R"], s.get("R_ci"), len(s["R"]) - 1
        just[name] = ([_cell(r, j, j) for j in range(n)], [_cell(ci, j, j) for j in range(n)])
        final[name] = (
            [_cell(r, last, j) for j in range(n)],
            [_cell(ci, last, j) for j in range(n)],
        )
    if base_nll:
        just["base"] = final["base"] = ((list(base_nll) + [None] * n)[:n], base.get("nll_ci"))
    panels = [("just after training on it: R[j][j]", just), ("after the last window", final)]
    return window_lines(labels(windows, n), panels, "answer NLL (lower is better)")


def cost_plot(rows: Sequence[dict[str, Any]]) -> str | None:
    """Training tokens against ACC for the strategies that report both."""
    points = [(r["name"], r["tokens"], r["acc"]) for r in rows if measured(r.get("tokens"))]
    points = [p for p in points if measured(p[2])]
    if not points:
        return None
    return cost_scatter(points, "training tokens over the chain", "ACC: mean NLL, last window ↓")


def memory_map(
    name: str, hits: Sequence[Sequence[Cell]] | None, windows: Sequence[str]
) -> str | None:
    """A strategy's probe hit rates (after window i, on window j's probes) on a 0–1 scale."""
    if not hits or not any(measured(x) for row in hits for x in row):
        return None
    return heatmap(
        hits,
        labels(windows, len(hits)),
        labels(windows, _width(hits)),
        title=name,
        axis_labels=("probes from window", "after training on window"),
        cbar_label="hit rate (higher is better)",
        limits=(0.0, 1.0),
    )


def confusion_map(confusion: Sequence[Sequence[int]] | None, names: Sequence[str]) -> str | None:
    """The triage confusion matrix (rows: true label, columns: predicted) as counts."""
    if not confusion:
        return None
    size = max(len(confusion), _width(confusion))
    return heatmap(
        confusion,
        labels(names, size, "label "),
        labels(names, size, "label "),
        title="triage confusion (counts)",
        axis_labels=("predicted label", "true label"),
        cbar_label="issues",
        cmap="Blues",
    )
