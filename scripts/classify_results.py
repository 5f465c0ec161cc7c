"""Triage and duplicate-search figures for docs/results.md, measured as ``adaptune compare`` does.

Ingests a dump (default: the huggingface/datasets one in ../shared/data) into a fresh workspace,
builds its dataset with windows of ``--window`` qa pairs, and runs compare's own
classifier measurements (:func:`adaptune.evaluate.classify.classify_measurements`) over
windows ``--windows`` — no adapter is trained, these parts do not need one. A dump without
qa pairs (no pull requests: the vLLM and llama.cpp samples) has no windows to compare; its
whole span is measured then, with the same parts. Prints the metrics' JSON and a markdown
table, and writes the JSON to ``--out``.

    python scripts/classify_results.py [--src PATH] [--window 50] [--windows 1-4] [--out F]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT.parent / "shared/data/github/huggingface-datasets.issues.jsonl.gz"


def measure(src: Path, home: Path, window: str, first: int, last: int) -> dict:
    """Ingest, build, and the classifier measurements of windows ``first``..``last``."""
    from adaptune.config import load_settings
    from adaptune.dataset import BuildConfig
    from adaptune.dataset.artifacts import iter_examples
    from adaptune.evaluate.classify import (
        classify_measurements,
        measure_duplicates,
        measure_triage,
    )
    from adaptune.ingest import ingest
    from adaptune.ingest.files import file_source
    from adaptune.memory import default_embedder
    from adaptune.pipeline import build_dataset
    from adaptune.store import open_store
    from adaptune.store.issues import select_issues

    store = open_store(load_settings(home=home))
    try:
        ingest(file_source(src), store)
        result = build_dataset(store, config=BuildConfig(window=window))
        windows = [w["name"] for w in result.manifest["tasks"]["qa"]["windows"]]
        chosen = windows[first - 1 : last]
        domain = result.manifest["domain"]
        if chosen:
            metrics = classify_measurements(store, domain, result.build_id, chosen)
        else:  # no qa windows: the whole span
            embedder = default_embedder()
            triage = list(iter_examples(result.path, "triage"))
            with store.begin() as conn:
                issues = list(select_issues(conn, include_prs=False))
            dups = list(iter_examples(result.path, "duplicates"))
            metrics = {
                "triage": measure_triage(triage, (None, None), embedder),
                "duplicates": measure_duplicates(dups, issues, embedder),
            }
    finally:
        store.close()
    return {"source": src.name, "build": result.build_id, "windows": chosen, **metrics}


def table(m: dict) -> str:
    """The figures as markdown rows."""
    t, d = m["triage"], m["duplicates"]
    rows = ["| measure | value (95 % CI) |", "|---|---|"]
    if "accuracy" in t:
        b = t["baseline"]
        acc, base = t["accuracy_ci"], b["accuracy_ci"]
        diff = t["minus_baseline"]["accuracy"]
        rows += [
            f"| triage accuracy, {t['name']} | {acc[0]:.3f} [{acc[1]:.3f}, {acc[2]:.3f}] |",
            f"| triage macro-F1, {t['name']} | {t['macro_f1']:.3f} |",
            f"| triage accuracy, {b['name']} | {base[0]:.3f} [{base[1]:.3f}, {base[2]:.3f}] |",
            f"| triage macro-F1, {b['name']} | {b['macro_f1']:.3f} |",
            f"| accuracy difference | {diff[0]:+.3f} [{diff[1]:+.3f}, {diff[2]:+.3f}] |",
            f"| held-out / train issues | {t['heldout']} / {t['train']} |",
        ]
    else:
        rows.append(f"| triage | not measured: {t.get('skipped')} |")
    if d.get("pairs"):
        for k, (mean, lo, hi) in d["recall_ci"].items():
            rows.append(f"| duplicate recall@{k} | {mean:.3f} [{lo:.3f}, {hi:.3f}] |")
        rows.append(f"| duplicate pairs searched | {d['pairs']} |")
    else:
        rows.append(f"| duplicates | not measured: {d.get('skipped')} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--src", type=Path, default=SRC)
    ap.add_argument("--window", default="50", help="qa pairs per window (as the results run)")
    ap.add_argument("--windows", default="1-4", help="FIRST-LAST (1-based)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/classify_datasets.json")
    args = ap.parse_args()
    if not args.src.exists():
        raise SystemExit(f"{args.src} is absent: the real data lives in ../shared/data")
    first, _, last = args.windows.partition("-")
    with tempfile.TemporaryDirectory() as tmp:
        m = measure(args.src, Path(tmp), args.window, int(first), int(last or first))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(m, indent=2, default=str) + "\n")
    print(json.dumps({k: v for k, v in m.items() if k != "triage"}, indent=2, default=str))
    print(table(m))


if __name__ == "__main__":
    main()
