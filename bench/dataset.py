"""Dataset build time on the full huggingface/datasets dump (goal: under 30 s on 2 cores).

Ingests the dump into a fresh workspace, then times ``dataset build`` by quarter (the default),
by month, and an identical rebuild (same content hash: nothing rewritten), beside the ingest
time of the same rows as the baseline every build starts from. Writes
``bench/results/dataset.json``.

    python bench/dataset.py [--src PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from adaptune.config import load_settings
from adaptune.dataset.build import BuildConfig
from adaptune.ingest import ingest
from adaptune.ingest.files import file_source
from adaptune.pipeline import build_dataset
from adaptune.store import open_store

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")
SRC = ROOT.parent / "shared/data/github/huggingface-datasets.issues.jsonl.gz"


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """(seconds, result) of ``fn()``."""
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def main() -> None:
    """Run the builds, print the table, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--src", type=Path, default=SRC)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/dataset.json")
    args = ap.parse_args()
    if not args.src.exists():
        raise SystemExit(f"{args.src} is absent: the real data lives in ../shared/data")
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(load_settings(home=Path(tmp)))
        t_ingest, _ = timed(lambda: ingest(file_source(args.src), store))
        t_q, quarter = timed(lambda: build_dataset(store, config=BuildConfig(window="quarter")))
        t_re, again = timed(lambda: build_dataset(store, config=BuildConfig(window="quarter")))
        t_m, month = timed(lambda: build_dataset(store, config=BuildConfig(window="month")))
        store.close()
    assert again.build_id == quarter.build_id
    qa = quarter.manifest["tasks"]["qa"]
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "baseline_ingest_s": round(t_ingest, 2),
        "build_quarter_s": round(t_q, 2),
        "rebuild_identical_s": round(t_re, 2),
        "build_month_s": round(t_m, 2),
        "qa_pairs": qa["total"],
        "qa_windows": len(qa["windows"]),
        "triage_examples": quarter.manifest["tasks"]["triage"]["total"],
        "month_windows": len(month.manifest["tasks"]["qa"]["windows"]),
        "rejected": quarter.manifest["rejected"],
        "goal_build_s_max": 30,
        "goal_met": t_q < 30,
    }
    print(f"{'step':<26}{'seconds':>10}")
    for key in ("baseline_ingest_s", "build_quarter_s", "rebuild_identical_s", "build_month_s"):
        print(f"{key:<26}{result[key]:>10.2f}")
    print(
        f"qa pairs {result['qa_pairs']} in {result['qa_windows']} windows; goal met: "
        f"{result['goal_met']}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
