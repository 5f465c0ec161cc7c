"""The loop's training job on the tiny model: train from production, measure, gate, record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adaptune.errors import ConfigError
from adaptune.ingest import ingest
from adaptune.ingest.files import file_source
from adaptune.pipeline.train_job import LoopParams, train_job
from adaptune.registry import gate, get, list_versions
from adaptune.store import Store
from test_compare import rows
from tiny_model import one_thread, save_tiny


def ingest_rows(store: Store, tmp_path: Path, last_month: int) -> None:
    """The issues and fixing PRs of 2022 up to ``last_month`` (10 per quarter)."""
    chosen = [r for r in rows() if int(r["created_at"][5:7]) <= last_month]
    path = tmp_path / f"issues-{last_month}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in chosen))
    ingest(file_source(path), store)


@pytest.fixture
def params(tmp_path: Path) -> dict:
    return {
        "model": str(save_tiny(tmp_path / "tiny")),
        "max_steps": 3,
        "batch_size": 2,
        "max_len": 256,
        "lr": 5e-3,
        "heldout_per_window": 3,
        "context": "none",
    }


def aliases(store: Store) -> dict[str, str]:
    return {a: v.version for v in list_versions(store) for a in v.aliases}


def agrees_with_gate(result: dict) -> None:
    """The decision follows from the recorded numbers (the real metric decides)."""
    g = result["gate"]
    reference = g["production"] if g["against"] == "production" else None
    again = gate(g["candidate"], reference, g["newest"], g["tolerance"], base=g["base"])
    assert again.passed is result["promoted"] and again.reason == g["reason"]
    assert result["alias"] == ("production" if result["promoted"] else "candidate")


def test_jobs_train_from_production_and_the_gate_decides_both_ways(store, tmp_path, params):
    ingest_rows(store, tmp_path, 4)
    with one_thread():
        first = train_job(store, None, {**params, "job_id": "j1"})
    assert first["window"] == "2022Q2" and first["parent"] is None
    assert first["gate"]["against"] == "base" and first["gate"]["newest"] == "2022Q2"
    assert set(first["gate"]["candidate"]) == {"2022Q1", "2022Q2"}
    agrees_with_gate(first)
    g = first["gate"]
    assert first["promoted"] is (g["candidate"]["2022Q2"] < g["base"]["2022Q2"])
    assert first["promoted"], g["reason"]  # 3 steps at lr 5e-3 learn the fixes' style
    assert aliases(store) == {"production": first["version"]}
    stored = get(store, first["version"])
    assert stored.metrics["gate"]["reason"] == g["reason"]
    assert stored.metrics["answer_nll"] == g["candidate"] and stored.config["job_id"] == "j1"

    ingest_rows(store, tmp_path, 12)  # a new quarter of solved issues arrives
    with one_thread():
        second = train_job(store, None, {**params, "job_id": "j2", "tolerance": 10.0})
    assert second["parent"] == first["version"] and second["window"] == "2022Q3"
    assert second["build"] != first["build"] and second["gate"]["against"] == "production"
    assert second["gate"]["production_version"] == first["version"]
    agrees_with_gate(second)
    production = second["version"] if second["promoted"] else first["version"]
    assert aliases(store)["production"] == production

    with one_thread():  # a tolerance no older window can meet: it stays a candidate
        third = train_job(store, None, {**params, "job_id": "j3", "tolerance": -0.99})
    agrees_with_gate(third)
    assert not third["promoted"] and third["parent"] == production
    assert aliases(store) == {"production": production, "candidate": third["version"]}
    assert any(w in third["gate"]["reason"] for w in ("2022Q1", "2022Q2", "2022Q3"))
    assert get(store, third["version"]).metrics["gate"]["passed"] is False

    with one_thread():  # a learning rate that wrecks the adapter: the newest window decides
        wrecked = train_job(store, None, {**params, "job_id": "j4", "lr": 0.9, "tolerance": 10.0})
    agrees_with_gate(wrecked)
    assert not wrecked["promoted"] and wrecked["parent"] == production
    assert wrecked["gate"]["reason"].startswith("no improvement on the newest window 2022Q3")
    assert aliases(store) == {"production": production, "candidate": wrecked["version"]}


class Crash(Exception):
    """The worker dies here."""


def crash_at(words: str, seen: list[str]):
    def progress(message: str) -> None:
        seen.append(message)
        if words in message:
            raise Crash(message)

    return progress


def test_a_retried_job_resumes_and_registers_one_version(store, tmp_path, params):
    ingest_rows(store, tmp_path, 4)
    job = {**params, "job_id": "job-7", "checkpoint_every": 1, "context": "retrieved"}
    seen: list[str] = []
    with one_thread(), pytest.raises(Crash):
        train_job(store, None, job, progress=crash_at("step 2/3", seen))
    assert list_versions(store) == []
    run_dir = store.settings.home / "runs" / "r" / "job-job-7"
    assert list((run_dir / "checkpoints").glob("step-*"))
    seen.clear()
    with one_thread(), pytest.raises(Crash):  # resumes from a checkpoint, dies after registering
        train_job(store, None, job, progress=crash_at("measuring", seen))
    steps = [m.split(" loss")[0] for m in seen if m.startswith("step ")]
    assert steps[-1] == "step 3/3" and "step 1/3" not in steps
    [version] = list_versions(store)
    assert not run_dir.exists() and "gate" not in version.metrics
    with one_thread():
        done = train_job(store, None, job)
    again = train_job(store, None, job)  # the same job delivered once more: nothing new
    assert [v.version for v in list_versions(store)] == [version.version]
    assert done == again and done["version"] == version.version
    assert aliases(store)[done["alias"]] == version.version


def test_job_parameters_are_checked() -> None:
    assert LoopParams.from_params({"tolerance": 0.1, "surprise": 1}).tolerance == 0.1
    with pytest.raises(ConfigError, match="context"):
        LoopParams.from_params({"context": "maybe"})
    with pytest.raises(ConfigError, match="heldout_per_window"):
        LoopParams.from_params({"heldout_per_window": 0})


def test_promote_false_leaves_a_passing_version_for_the_caller():
    from adaptune.pipeline.train_job import LoopParams, _alias

    assert _alias({"passed": True}) == "production"
    assert _alias({"passed": True, "auto_promote": False}) == "candidate"
    assert _alias({"passed": False, "auto_promote": True}) == "candidate"
    assert LoopParams.from_params({"promote": False}).promote is False
