"""Triage classifier vs a TF-IDF + logistic-regression baseline, and the similar-issue search.

For each real dump: ingest into a fresh workspace, build the dataset, order the triage examples
by time, train on the earlier 80 % and test on the later 20 %. Compared on the same split:
adaptune's classifier (embeddings + tf-idf, :mod:`adaptune.triage`), the same without
embeddings, and the baseline (``TfidfVectorizer()`` + ``LogisticRegression(class_weight=
"balanced")``). Accuracy and macro-F1 come with 95 % bootstrap intervals, and the paired
difference to the baseline with its own interval. Also measured: the search latency of the
similar-issue index at 10,000 issues, and how close issues labelled ``duplicate`` come to an
earlier issue (the evidence for ``DUPLICATE_THRESHOLD``). Writes ``bench/results/triage.json``.

    python bench/triage.py [--dumps datasets vllm]
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

import numpy as np

from adaptune.config import load_settings
from adaptune.evaluate.metrics import bootstrap_ci
from adaptune.ingest import ingest
from adaptune.ingest.files import file_source
from adaptune.memory import default_embedder
from adaptune.memory.embed import Embedder
from adaptune.memory.issues import DUPLICATE_THRESHOLD, IssueIndex, issue_text
from adaptune.pipeline import build_dataset
from adaptune.store import open_store
from adaptune.store.issues import select_issues
from adaptune.triage import train_triage
from adaptune.triage.baseline import fit_baseline
from adaptune.triage.scores import triage_scores

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared/data/github"
DUMPS = {
    "datasets": "huggingface-datasets.issues.jsonl.gz",
    "vllm": "vllm.issues-sample.jsonl.gz",
    "llama.cpp": "llama.cpp.issues-sample.jsonl.gz",
}
N_BOOT = 1000


def timed(fn):
    """(seconds, result) of ``fn()``."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def boot(y: list[str], preds: dict[str, list[str]], base: str) -> dict:
    """Accuracy and macro-F1 of each prediction set with 95 % intervals, and paired
    differences to ``base`` (same resampled examples for every set)."""
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(y), (N_BOOT, len(y)))
    labels = sorted(set(y))
    out = {}
    for name, p in preds.items():
        s = triage_scores(y, p, labels)
        correct = [float(a == b) for a, b in zip(y, p, strict=True)]
        f1s = np.array([_f1(y, p, labels, i) for i in idx])
        out[name] = {
            "accuracy": s["accuracy"],
            "accuracy_ci95": list(bootstrap_ci(correct, n_boot=N_BOOT)[1:]),
            "macro_f1": s["macro_f1"],
            "macro_f1_ci95": list(np.quantile(f1s, [0.025, 0.975])),
            "_f1s": f1s,
            "_correct": np.array(correct),
        }
    for name, r in out.items():
        if name != base:
            dacc = r["_correct"][idx].mean(1) - out[base]["_correct"][idx].mean(1)
            df1 = r["_f1s"] - out[base]["_f1s"]
            r["minus_baseline"] = {
                "accuracy_ci95": list(np.quantile(dacc, [0.025, 0.975])),
                "macro_f1_ci95": list(np.quantile(df1, [0.025, 0.975])),
            }
    for r in out.values():
        del r["_f1s"], r["_correct"]
    return out


def _f1(y, p, labels, rows) -> float:
    return triage_scores([y[i] for i in rows], [p[i] for i in rows], labels)["macro_f1"]


def baseline(train, test) -> tuple[list[str], float, float]:
    """The baseline of :mod:`adaptune.triage.baseline`: predictions, fit and predict seconds."""
    t_fit, model = timed(
        lambda: fit_baseline([e.question for e in train], [e.answer for e in train])
    )
    t_pred, pred = timed(lambda: list(model.predict([e.question for e in test])))
    return pred, t_fit, t_pred


def compare(name: str, home: Path) -> tuple[dict, list]:
    """Ingest, build and compare the classifiers on one dump."""
    store = open_store(load_settings(home=home))
    t_ingest, _ = timed(lambda: ingest(file_source(DATA / DUMPS[name]), store))
    # includes training the build's classifier
    t_build, result = timed(lambda: build_dataset(store))
    with store.begin() as conn:
        issues = list(select_issues(conn, include_prs=False))
    store.close()
    rows = sorted(result.examples["triage"], key=lambda e: (e.known_at, e.id))
    cut = int(len(rows) * 0.8)
    train, test = rows[:cut], rows[cut:]
    emb = default_embedder()  # warm: the build embedded these texts already
    cold = Embedder(emb.model)
    sample = [e.question for e in test[:64]]
    t_embed, _ = timed(lambda: cold.encode(sample))
    per_text = t_embed / len(sample)
    preds, timing = {}, {}
    for label, weight in (("adaptune", 0.5), ("adaptune_tfidf_only", 0.0)):
        t_fit, model = timed(
            lambda w=weight: train_triage(train, emb, holdout=0, embedding_weight=w)
        )
        t_pred, out = timed(lambda m=model: m.predict([e.question for e in test]))
        preds[label] = [o["label"] for o in out]
        embed_cost = per_text if weight else 0.0
        timing[label] = {
            "train_s": round(t_fit + embed_cost * len(train), 2),
            "predict_ms_per_issue": round(1000 * (t_pred / len(test) + embed_cost), 2),
        }
    preds["baseline_tfidf_lr"], t_fit, t_pred = baseline(train, test)
    timing["baseline_tfidf_lr"] = {
        "train_s": round(t_fit, 2),
        "predict_ms_per_issue": round(1000 * t_pred / len(test), 2),
    }
    scores = boot([e.answer for e in test], preds, "baseline_tfidf_lr")
    for key, value in timing.items():
        scores[key].update(value)
    report = {
        "train": len(train),
        "test": len(test),
        "labels": dict(sorted(result.manifest["tasks"]["triage"]["labels"].items())),
        "ingest_s": round(t_ingest, 1),
        "build_s_with_classifier": round(t_build, 1),
        "embed_ms_per_text_cold": round(1000 * per_text, 1),
        "models": scores,
    }
    return report, issues


def duplicates_evidence(issues: list, emb: Embedder) -> dict:
    """Best similarity of each issue to an earlier one: issues labelled ``duplicate`` vs others."""
    texts = [issue_text(i) for i in issues]  # oldest first
    vecs = emb.encode(texts)
    best = [float((vecs[:j] @ vecs[j]).max()) if j else -1.0 for j in range(len(vecs))]
    dup = np.array([b for b, i in zip(best, issues, strict=True) if "duplicate" in i.labels])
    other = np.array([b for b, i in zip(best, issues, strict=True) if "duplicate" not in i.labels])
    out = {"labelled_duplicate": len(dup), "others": len(other)}
    for t in (0.75, 0.8, 0.85, 0.9):
        out[f"share_over_{t}"] = {
            "duplicate": round(float((dup >= t).mean()), 3) if len(dup) else None,
            "others": round(float((other >= t).mean()), 3),
        }
    out["median_best"] = {"duplicate": float(np.median(dup)), "others": float(np.median(other))}
    return out


class _Replay:
    """Hands out stored vectors in place of an embedding model (fills a big index fast)."""

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors, self.dim, self.i = vectors, vectors.shape[1], 0

    def encode(self, texts):
        rng = np.random.default_rng(self.i)
        rows = self.vectors[np.arange(self.i, self.i + len(texts)) % len(self.vectors)]
        self.i += len(texts)
        noisy = rows + rng.normal(0, 0.05, rows.shape).astype(np.float32)
        return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)


def search_latency(issues: list, home: Path, n: int = 10_000) -> dict:
    """Index ``n`` issues (real vectors, replayed with noise), then time real queries."""
    from dataclasses import replace

    emb = default_embedder()
    vecs = emb.encode([issue_text(i) for i in issues])
    index = IssueIndex("bench", _Replay(vecs), home)  # type: ignore[arg-type]
    fake = [replace(issues[j % len(issues)], number=j + 1) for j in range(n)]
    index.update(fake)
    index.embedder = Embedder(emb.model)  # cold cache: every query runs the model
    queries = [f"Title: {i.title}\n\n{(i.body or '')[:400]}" for i in issues[-50:]]
    search_ms, matmul_ms = [], []
    for q in queries:
        search_ms.append(1000 * timed(lambda q=q: index.search(q, k=5))[0])
        matmul_ms.append(1000 * timed(lambda q=q: index.search(q, k=5))[0])  # cached query
    return {
        "issues": len(index),
        "search_ms_p50": round(float(np.percentile(search_ms, 50)), 2),
        "search_ms_p95": round(float(np.percentile(search_ms, 95)), 2),
        "search_without_embedding_ms_p95": round(float(np.percentile(matmul_ms, 95)), 2),
    }


def main() -> None:
    """Run the comparisons, print them side by side, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dumps", nargs="+", default=["datasets", "vllm"], choices=list(DUMPS))
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/triage.json")
    args = ap.parse_args()
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "split": "triage examples by time: earlier 80 % train, later 20 % test",
        "dumps": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.dumps:
            report, issues = compare(name, Path(tmp) / name)
            result["dumps"][name] = report
            if name == "datasets":
                labelled = [i for i in issues if i.labels]  # duplicates carry labels
                result["duplicates"] = duplicates_evidence(labelled, default_embedder())
                result["duplicates"]["default_threshold"] = DUPLICATE_THRESHOLD
                result["index_search"] = search_latency(labelled, Path(tmp) / "ix")
    print(
        f"{'dump':<10}{'model':<22}{'accuracy [95% CI]':>26}{'macro-F1 [95% CI]':>26}"
        f"{'train s':>9}{'ms/issue':>10}"
    )
    for name, rep in result["dumps"].items():
        for model, s in rep["models"].items():
            acc = f"{s['accuracy']:.3f} [{s['accuracy_ci95'][0]:.3f}, {s['accuracy_ci95'][1]:.3f}]"
            f1 = f"{s['macro_f1']:.3f} [{s['macro_f1_ci95'][0]:.3f}, {s['macro_f1_ci95'][1]:.3f}]"
            print(
                f"{name:<10}{model:<22}{acc:>26}{f1:>26}{s['train_s']:>9.2f}"
                f"{s['predict_ms_per_issue']:>10.2f}"
            )
    if "index_search" in result:
        print("index search:", result["index_search"])
        print("duplicates:", result["duplicates"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
