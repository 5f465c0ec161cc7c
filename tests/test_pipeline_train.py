"""A training chain end to end on the tiny model: dataset build → plan → train → registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from adaptune.errors import ConfigError
from adaptune.ingest import ingest
from adaptune.ingest.files import file_source
from adaptune.pipeline import build_dataset, plan, run_iteration
from adaptune.registry import list_versions
from adaptune.train import TrainConfig
from tiny_model import one_thread, save_tiny, tiny_model, tiny_tokenizer

WORDS = "cache split arrow shard stream token column feature parquet audio image batch".split()  # noqa: SIM905


def rows() -> list[dict]:
    """18 solved issues over three quarters of 2022, each fixed by a merged PR."""
    out = []
    for n in range(1, 19):
        month = 1 + (n - 1) // 6 * 3
        words = " ".join(WORDS[(n + k) % len(WORDS)] for k in range(6))
        created = f"2022-{month:02d}-0{1 + n % 5}T00:00:00Z"
        closed = f"2022-{month:02d}-2{n % 5}T00:00:00Z"
        out.append(
            {
                "number": n,
                "title": f"load_dataset {words} fails for case {n}",
                "body": f"When I use {words} number {n} the loader raises ValueError {n * 7}.",
                "state": "closed",
                "created_at": created,
                "closed_at": closed,
                "html_url": f"https://github.com/o/r/issues/{n}",
                "labels": [{"name": "bug"}],
            }
        )
        out.append(
            {
                "number": 100 + n,
                "title": f"Fix {words} handling",
                "body": f"Fixes #{n}. The {words} path now checks the split before reading.",
                "state": "closed",
                "created_at": created,
                "closed_at": closed,
                "html_url": f"https://github.com/o/r/pull/{100 + n}",
                "labels": [],
                "pull_request": {"merged_at": closed},
            }
        )
    return out


@pytest.fixture
def built(store, tmp_path: Path):
    path = tmp_path / "issues.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows()))
    ingest(file_source(path), store)
    result = build_dataset(store)
    assert [w["name"] for w in result.manifest["tasks"]["qa"]["windows"]] == [
        "2022Q1",
        "2022Q2",
        "2022Q3",
    ]
    return store


def test_adaptive_chain_and_baselines_register_with_lineage(built) -> None:
    store = built
    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer)
    cfg = {"max_steps": 3, "batch_size": 2, "max_len": 256, "checkpoint_every": 2}
    with one_thread():
        for window in ("1", "2", "3"):
            p = plan(store, None, "adaptive", window, context="none")
            config = TrainConfig(strategy="adaptive", window=p.window, **cfg)
            run_iteration(store, p, config, model=model, tokenizer=tokenizer)
        p = plan(store, None, "from-base", "2022Q2", context="none")
        assert p.parent is None
        run_iteration(
            store,
            p,
            TrainConfig(strategy="from-base", window=p.window, **cfg),
            model=model,
            tokenizer=tokenizer,
        )
    versions = {v.version: v for v in list_versions(store)}
    chain = [versions[f"r-v{i}"] for i in (1, 2, 3)]
    assert [v.window for v in chain] == ["2022Q1", "2022Q2", "2022Q3"]
    assert [v.parent for v in chain] == [None, "r-v1", "r-v2"]
    assert chain[2].config["replayed"] > 0 and chain[0].config["replayed"] == 0
    assert chain[2].cost["tokens"] > 0 and chain[2].dataset
    assert versions["r-v4"].strategy == "from-base" and versions["r-v4"].parent is None
    leftovers = list((store.settings.home / "runs").rglob("checkpoints/step-*"))
    assert leftovers == []


def test_plan_retrieves_only_earlier_context(built) -> None:
    p = plan(built, None, "adaptive", "3", context="retrieved")
    by_id = {e.id: e for e in p.examples}
    for ex in p.examples:
        for key in ex.meta["context_ids"]:
            assert key != ex.id and by_id[key].known_at <= ex.known_at
            assert by_id[key].split == "train"
    assert any(ex.meta["context"] for ex in p.examples)
    with pytest.raises(ConfigError, match=r"windows 1\.\.3"):
        plan(built, None, "adaptive", "7", context="none")
    with pytest.raises(ConfigError, match="context"):
        plan(built, None, "adaptive", None, context="maybe")


def test_train_command_on_a_local_model_folder(built, tmp_path: Path) -> None:
    folder = save_tiny(tmp_path / "tiny")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "adaptune",
            "train",
            "--model",
            str(folder),
            "--window",
            "1",
            "--max-steps",
            "2",
            "--batch-size",
            "2",
            "--max-len",
            "256",
            "--context",
            "none",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["version"] == "r-v1" and data["window"] == "2022Q1"
    assert data["cost"]["steps"] == 2
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "adaptune",
            "train",
            "--model",
            str(tmp_path / "nope"),
            "--max-steps",
            "1",
            "--context",
            "none",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert bad.returncode != 0 and "Traceback" not in bad.stderr


def test_train_command_under_torchrun_registers_one_version(built, tmp_path: Path) -> None:
    folder = save_tiny(tmp_path / "tiny")
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this Python")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            str(torchrun),
            "--nproc-per-node",
            "2",
            "-m",
            "adaptune",
            "train",
            "--model",
            str(folder),
            "--window",
            "1",
            "--max-steps",
            "2",
            "--batch-size",
            "1",
            "--max-len",
            "256",
            "--context",
            "none",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [v.version for v in list_versions(built)] == ["r-v1"]
