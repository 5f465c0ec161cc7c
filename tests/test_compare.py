"""``compare`` end to end on the tiny model: chains, R matrices, controls, report, reuse."""

from __future__ import annotations

import json

import numpy as np
import pytest

from adaptune.dataset import BuildConfig
from adaptune.dataset.artifacts import find_build, iter_examples
from adaptune.ingest import ingest
from adaptune.ingest.files import file_source
from adaptune.pipeline import build_dataset
from adaptune.pipeline.compare import CompareConfig, compare
from adaptune.registry import list_versions
from test_pipeline_train import WORDS
from tiny_model import one_thread, tiny_model, tiny_tokenizer


def rows(per_window: int = 10) -> list[dict]:
    out = []
    for n in range(1, 3 * per_window + 1):
        month = 1 + (n - 1) // per_window * 3
        words = " ".join(WORDS[(n * 5 + k) % len(WORDS)] for k in range(7))
        day = 1 + n % 20
        common = {
            "state": "closed",
            "created_at": f"2022-{month:02d}-{day:02d}T00:00:00Z",
            "closed_at": f"2022-{month:02d}-{day + 2:02d}T00:00:00Z",
        }
        out.append(
            {
                **common,
                "number": n,
                "title": f"{words} breaks case {n}",
                "body": f"Calling load_dataset with {words} raises KeyError {n * 13}.",
                "html_url": f"https://github.com/o/r/issues/{n}",
                "labels": [{"name": "bug"}],
            }
        )
        out.append(
            {
                **common,
                "number": 500 + n,
                "title": f"Fix {words} {n}",
                "body": f"Fixes #{n}. Check {words} before reading shard {n}.",
                "html_url": f"https://github.com/o/r/pull/{500 + n}",
                "labels": [],
                "pull_request": {"merged_at": common["closed_at"]},
            }
        )
    return out


@pytest.mark.timeout(900)
def test_compare_chains_measures_and_reports(store, tmp_path):
    path = tmp_path / "issues.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows()))
    ingest(file_source(path), store)
    build_dataset(store, config=BuildConfig(heldout=0.3))
    tok = tiny_tokenizer()
    model = tiny_model(tok)
    cfg = CompareConfig(
        first=1,
        last=3,
        max_steps=2,
        batch_size=2,
        max_len=256,
        heldout_per_window=3,
        ranking_examples=3,
        probes_per_window=2,
    )
    with one_thread():
        metrics, folder = compare(store, None, cfg, model=model, tokenizer=tok)
    assert metrics["windows"] == ["2022Q1", "2022Q2", "2022Q3"]
    for label in ("adaptive", "from-base", "cumulative"):
        s = metrics["strategies"][label]
        assert np.array(s["R"]).shape == (3, 3) and len(s["versions"]) == 3
        assert {"acc", "bwt", "fwt"} <= set(s) and s["cost"]["tokens"] > 0
    modes = metrics["answer_modes"]
    assert {
        "base",
        "base+retrieval",
        "adapter",
        "adapter+retrieval",
        "style-control",
        "retrieval-baseline",
    } <= set(modes)
    # the retrieval baseline answers each held-out issue with the fix of an earlier training
    # issue, never with its own fix or a later one (that would leak the answer)
    mean, lo, hi = modes["retrieval-baseline"]["rouge_l"]
    assert 0 < lo <= mean <= hi <= 1
    build_dir = find_build(store.settings.home, metrics["domain"], metrics["build"])
    qa = {e.issue: e for e in iter_examples(build_dir, "qa")}
    for sample in metrics["samples"]:
        asked = qa[sample["issue"]]
        past = [e for e in qa.values() if e.answer == sample["retrieval"]]
        assert asked.split != "train" and past, sample
        assert all(e.split == "train" and e.known_at <= asked.known_at for e in past), sample
    # generated answers in every way to answer, on transformers (the tiny model has no GGUF)
    assert metrics["generation"]["backend"] == "transformers"
    assert metrics["generation"]["examples"] >= 6
    for name in ("base", "base+retrieval", "adapter", "adapter+retrieval", "style-control"):
        mean, lo, hi = modes[name]["embed_sim"]
        assert lo <= mean <= hi and 0 <= modes[name]["rouge_l"][0] <= 1
    sims = [p for p in metrics["paired"] if p["metric"] == "embed_sim"]
    assert {(p["a"], p["b"]) for p in sims} >= {("adapter+retrieval", "retrieval-baseline")}
    assert len(metrics["samples"]) == 6 and metrics["samples"][0]["reference"]
    assert metrics["paired"] and metrics["verdict"]
    assert len(metrics["memory_probes"]["adaptive"]["hit_rate_per_window"]) == 3
    assert "too few" in metrics["triage"]["skipped"]  # every issue here is a bug
    assert metrics["duplicates"]["skipped"] == "the build has no duplicate pairs"
    html = (folder / "report.html").read_text()
    assert 'id="r-matrices"' in html and "data:image/png;base64" in html
    assert "not measured: the build has no duplicate pairs" in html
    assert html.count('<div class="sample">') == 6
    assert json.loads((folder / "metrics.json").read_text())["id"] == metrics["id"]
    versions = [v.version for v in list_versions(store)]
    adaptive = [v for v in list_versions(store) if v.strategy == "adaptive"]
    assert [v.parent for v in adaptive] == [None, adaptive[0].version, adaptive[1].version]
    with one_thread():
        compare(store, None, cfg, model=model, tokenizer=tok)  # every adapter is reused
    assert [v.version for v in list_versions(store)] == versions
