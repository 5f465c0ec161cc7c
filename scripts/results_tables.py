"""Markdown tables of a ``compare`` run's metrics.json, for docs/results.md.

    python scripts/results_tables.py ADAPTUNE_HOME/reports/<id>/metrics.json > tables.md

Prints every table docs/results.md quotes: per strategy the R matrix with CIs, ACC, BWT, FWT
and cost; the base model per window; the ways to answer on every metric; the paired
differences; memory probes. The numbers are copied as they are, nothing is recomputed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def ci(value: Any) -> str:
    """``mean [lo, hi]`` or ``–``."""
    if not value or value[0] is None:
        return "–"
    return f"{value[0]:.3f} [{value[1]:.3f}, {value[2]:.3f}]"


def num(value: Any, signed: bool = False) -> str:
    if value is None or value != value:
        return "–"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def strategies(m: dict[str, Any]) -> list[str]:
    windows = m["windows"]
    lines = ["| strategy | ACC (mean NLL after the last window) | BWT | FWT | examples | "
             "real tokens | seconds |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, s in m["strategies"].items():
        c = s["cost"]
        lines.append(
            f"| {name} | {num(s['acc'])} | {num(s['bwt'], True)} | {num(s.get('fwt'), True)} | "
            f"{c['examples']:.0f} | {c['tokens']:.0f} | {c['seconds']:.0f} |"
        )
    base = m["base"]["nll_per_window"]
    per_window = ", ".join(f"{w} {num(v)}" for w, v in zip(windows, base, strict=True))
    lines += ["", f"Base model, answer NLL per window's held-out set: {per_window}", ""]
    for name, s in m["strategies"].items():
        lines += [f"R matrix, {name} (row: after training on window; column: held-out window; "
                  "answer NLL, lower is better, 95 % CI):", ""]  # fmt: skip
        lines.append("| after \\ on | " + " | ".join(windows) + " |")
        lines.append("|---" * (len(windows) + 1) + "|")
        for i, row in enumerate(s["R"]):
            cells = []
            for j, v in enumerate(row):
                lo_hi = (s.get("R_ci") or [[None] * len(row)] * len(s["R"]))[i][j]
                cells.append(f"{num(v)} [{lo_hi[0]:.2f}, {lo_hi[1]:.2f}]" if lo_hi else num(v))
            lines.append(f"| {windows[i]} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def modes(m: dict[str, Any]) -> list[str]:
    keys = ("nll", "fix_acc1", "fix_mrr", "embed_sim", "rouge_l")
    lines = ["| way to answer | answer NLL ↓ | fix acc@1 | fix MRR | answer similarity | "
             "ROUGE-L |", "|---|---|---|---|---|---|"]  # fmt: skip
    for name, mode in m["answer_modes"].items():
        lines.append(f"| {name} | " + " | ".join(ci(mode.get(k)) for k in keys) + " |")
    lines += ["", "| paired difference (a − b) | metric | mean [95 % CI] |", "|---|---|---|"]
    for p in m.get("paired", []):
        lines.append(f"| {p['a']} − {p['b']} | {p['metric']} | {ci(p['diff'])} |")
    return lines


def probes(m: dict[str, Any]) -> list[str]:
    lines = []
    for name, p in (m.get("memory_probes") or {}).items():
        lines += [f"Memory probes, {name} (share of trained issues, asked again, whose fix is "
                  "ranked first; row: after window, column: window the issue was trained in), "
                  f"BWT {num(p.get('bwt'), True)}:", ""]  # fmt: skip
        windows = m["windows"]
        lines.append("| after \\ of | " + " | ".join(windows) + " |")
        lines.append("|---" * (len(windows) + 1) + "|")
        for i, row in enumerate(p["hit_rate_per_window"]):
            lines.append(f"| {windows[i]} | " + " | ".join(num(v) for v in row) + " |")
        lines.append("")
    return lines


def main() -> None:
    """Print the tables of the metrics.json given as the only argument."""
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    m = json.loads(Path(sys.argv[1]).read_text())
    print(f"Report {m.get('id')}, build {m.get('build')}, windows {', '.join(m['windows'])}, "
          f"machine {m.get('machine')}, generation {m.get('generation')}\n")  # fmt: skip
    print("\n".join([*strategies(m), "", *modes(m), "", *probes(m)]))
    for line in m.get("verdict", []):
        print(f"- {line}")


if __name__ == "__main__":
    main()
