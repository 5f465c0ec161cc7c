"""``adaptune evaluate`` end to end on the tiny model: the JSON contract, saved metrics, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from adaptune.errors import ConfigError
from adaptune.evaluate.evaluation import pick_windows
from adaptune.registry import get
from test_pipeline_train import built  # noqa: F401  (fixture)
from tiny_model import save_tiny


def _adaptune(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "adaptune", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"},  # read now: per test
        timeout=600,
    )


def test_pick_windows() -> None:
    ws = ["a", "b", "c", "d"]
    assert pick_windows(ws, None) == ws and pick_windows(ws, "all") == ws
    assert pick_windows(ws, "2") == ["b"] and pick_windows(ws, "2-4") == ["b", "c", "d"]
    assert pick_windows(ws, "c") == ["c"]
    for bad in ("0", "3-9", "x-y", "4-2"):
        with pytest.raises(ConfigError, match="--windows"):
            pick_windows(ws, bad)


@pytest.mark.timeout(900)
def test_evaluate_an_adapter_against_the_base(built, tmp_path: Path) -> None:  # noqa: F811
    folder = save_tiny(tmp_path / "tiny")
    trained = _adaptune(
        "train", "--model", str(folder), "--window", "1", "--max-steps", "2",
        "--batch-size", "2", "--max-len", "256", "--json",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    version = json.loads(trained.stdout)["version"]
    proc = _adaptune(
        "evaluate", version, "--windows", "1-2", "--heldout", "3", "--generate", "2",
        "--ranking", "2", "--max-len", "256", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["version"] == version and got["domain"] == got["adapter_domain"] == "r"
    assert got["windows"] == ["2022Q1", "2022Q2"] and got["context"] == "retrieved"
    assert got["backend"] == "transformers"  # a non-default base never goes to llama.cpp
    assert got["examples"]["generated"] == 2 and got["examples"]["ranking"] == 2
    for side in ("base", "adapter"):
        for metric in ("nll", "fix_acc1", "fix_mrr", "embed_sim", "rouge_l"):
            mean, lo, hi = got[side][metric]
            assert lo <= mean <= hi, (side, metric)
    assert got["base"]["nll"] != got["adapter"]["nll"]  # the adapter changed something
    mean, lo, hi = got["diff"]["nll"]
    assert lo <= mean <= hi
    assert set(got["retrieval_baseline"]) == {"embed_sim", "rouge_l"}
    sample = got["samples"][0]
    assert {"issue", "question", "reference", "base", "adapter", "retrieval"} <= set(sample)
    saved = get(built, version).metrics["evaluations"]["r:2022Q1-2022Q2:retrieved"]
    assert saved["nll"] == got["adapter"]["nll"] and saved["diff"] == got["diff"]
    table = _adaptune(
        "evaluate", version, "--windows", "3", "--heldout", "2", "--generate", "0",
        "--ranking", "0", "--max-len", "256", "--context", "none", "--no-save",
    )  # fmt: skip
    assert table.returncode == 0, table.stderr
    assert "answer NLL" in table.stdout and "retrieval only" in table.stdout
    assert "r:2022Q3-2022Q3:none" not in get(built, version).metrics["evaluations"]


def test_evaluate_errors_are_one_clear_line(built) -> None:  # noqa: F811
    no_prod = _adaptune("evaluate", "--generate", "0", "--ranking", "0")
    assert no_prod.returncode != 0 and "has no production adapter" in no_prod.stderr
    missing = _adaptune("evaluate", "r-v99")
    assert missing.returncode != 0 and "r-v99" in missing.stderr
    assert "Traceback" not in missing.stderr + no_prod.stderr


def test_issue_texts_of_another_domain(built, tmp_path: Path) -> None:  # noqa: F811
    from adaptune.ingest import ingest
    from adaptune.ingest.files import file_source
    from adaptune.pipeline import build_dataset

    other = []
    for n in range(1, 41):
        label = ("bug", "enhancement")[n % 2]
        other.append(
            {
                "number": n,
                "title": f"Kernel {n} crashes on load",
                "body": f"Loading model {n} aborts with a segfault in the {label} path.",
                "html_url": f"https://github.com/o2/other/issues/{n}",
                "state": "closed",
                "created_at": f"2023-0{1 + n % 9}-0{1 + n % 8}T00:00:00Z",
                "closed_at": f"2023-0{1 + n % 9}-2{n % 8}T00:00:00Z",
                "labels": [{"name": label}],
            }
        )
    path = tmp_path / "other.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in other))
    ingest(file_source(path), built)
    build_dataset(built, domain="other")
    folder = save_tiny(tmp_path / "tiny")
    trained = _adaptune(
        "train", "--model", str(folder), "--domain", "r", "--window", "1", "--max-steps", "2",
        "--batch-size", "2", "--max-len", "256", "--json",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    version = json.loads(trained.stdout)["version"]
    qa = _adaptune("evaluate", version, "--domain", "other", "--generate", "0", "--ranking", "0")
    assert qa.returncode != 0 and "no qa windows" in qa.stderr  # no resolutions there
    proc = _adaptune("evaluate", version, "--domain", "other", "--task", "issues", "--json")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["domain"] == "other" and got["adapter_domain"] == "r" and got["examples"] > 0
    for side in ("base", "adapter", "diff"):
        mean, lo, hi = got[side]["text_nll"]
        assert lo <= mean <= hi
    assert got["base"]["text_nll"] != got["adapter"]["text_nll"]
    assert "other:issues" in get(built, version).metrics["evaluations"]
