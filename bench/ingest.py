"""Ingest throughput: ``ingest file`` of the 6,419-row huggingface/datasets dump, then a re-ingest.

Prints rows/s for adaptune's batched upsert beside a named baseline (a row-at-a-time upsert:
one SELECT and one INSERT per row, in one transaction) and writes ``bench/results/ingest.json``.
Goals: the whole dump in under 10 s on a 2-core machine, a re-ingest (no-op) in under 3 s.

    python bench/ingest.py [--src PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import and_, select

from adaptune.config import load_settings
from adaptune.ingest import ingest
from adaptune.ingest.files import file_source, iter_objects
from adaptune.ingest.normalize import github_issue
from adaptune.store import open_store, schema
from adaptune.store.rows import issue_to_row

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT.parent / "shared/data/github/huggingface-datasets.issues.jsonl.gz"


def timed_ingest(path: Path, home: Path) -> tuple[float, float, int]:
    """Seconds for a first ingest and for a re-ingest into a fresh workspace, and the rows."""
    store = open_store(load_settings(home=home))
    t0 = time.perf_counter()
    report = ingest(file_source(path), store)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = ingest(file_source(path), store)
    second = time.perf_counter() - t0
    assert again.inserted == 0 and again.updated == 0, "re-ingest must be a no-op"
    store.close()
    return first, second, report.seen


def baseline_ingest(path: Path, home: Path) -> float:
    """Row-at-a-time upsert: what a straightforward implementation does."""
    store = open_store(load_settings(home=home))
    t = schema.issues
    t0 = time.perf_counter()
    with store.begin() as conn:
        for _where, obj in iter_objects(path):
            issue = github_issue(obj)
            key = and_(t.c.source == issue.source, t.c.repo == issue.repo)
            hit = conn.execute(select(t.c.id).where(key, t.c.number == issue.number)).first()
            if hit is None:
                conn.execute(t.insert().values(**issue_to_row(issue)))
    elapsed = time.perf_counter() - t0
    store.close()
    return elapsed


def main() -> None:
    """Run both, print them side by side, write the JSON results."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--src", type=Path, default=SRC)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/ingest.json")
    args = ap.parse_args()
    if not args.src.exists():
        raise SystemExit(f"{args.src} is absent: the real data lives in ../shared/data")
    with tempfile.TemporaryDirectory() as tmp:
        first, again, rows = timed_ingest(args.src, Path(tmp) / "a")
        base = baseline_ingest(args.src, Path(tmp) / "b")
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "rows": rows,
        "adaptune": {"ingest_s": round(first, 3), "rows_per_s": round(rows / first)},
        "adaptune_reingest": {"ingest_s": round(again, 3), "rows_per_s": round(rows / again)},
        "baseline_row_at_a_time": {"ingest_s": round(base, 3), "rows_per_s": round(rows / base)},
        "speedup_vs_baseline": round(base / first, 2),
        "goals": {"ingest_s_max": 10, "reingest_s_max": 3},
        "goals_met": first < 10 and again < 3,
    }
    print(f"{'run':<28}{'seconds':>10}{'rows/s':>10}")
    for name in ("adaptune", "adaptune_reingest", "baseline_row_at_a_time"):
        print(f"{name:<28}{result[name]['ingest_s']:>10.2f}{result[name]['rows_per_s']:>10}")
    print(
        f"speed-up vs baseline: {result['speedup_vs_baseline']}x; goals met: {result['goals_met']}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
