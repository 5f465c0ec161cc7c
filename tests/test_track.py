"""Experiment tracking with MLflow: runs are read back from the store with MLflow's own client."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adaptune.cli import app
from adaptune.errors import ConfigError
from adaptune.pipeline import build_dataset
from adaptune.pipeline.train_job import LoopParams, train_job
from adaptune.registry import get
from adaptune.track import NoTracker, check_kind, default_uri, tracking
from test_loop import ingest_rows
from tiny_model import one_thread, save_tiny

mlflow = pytest.importorskip("mlflow")


@pytest.fixture(autouse=True)
def no_mlflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs go to the workspace's default store unless a test says otherwise."""
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "RANK"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def built(store, tmp_path: Path):
    """A store with the issues of 2022's first two quarters and a dataset built from them."""
    ingest_rows(store, tmp_path, 6)
    build_dataset(store)
    return store


def only_run(uri: str, experiment: str):
    """The one run of ``experiment`` in the store at ``uri``, and the client that read it."""
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment}"
    runs = client.search_runs([found.experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def steps(client, run_id: str, key: str) -> list[int]:
    return [m.step for m in client.get_metric_history(run_id, key)]


def test_cli_train_tracks_params_step_losses_and_the_adapter(built, workspace, tmp_path) -> None:
    model = save_tiny(tmp_path / "tiny")
    args = ["train", "--model", str(model), "--strategy", "from-base", "--max-steps", "3"]
    args += ["--batch-size", "2", "--max-len", "256", "--lr", "5e-3", "--context", "none"]
    with one_thread():
        result = CliRunner().invoke(app, [*args, "--track", "mlflow", "--json"])
    assert result.exit_code == 0, result.output
    version = get(built, json.loads(result.stdout)["version"])
    client, run = only_run(default_uri(workspace), f"adaptune-{version.domain}")
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert (params["max_steps"], params["lr"], params["strategy"]) == ("3", "0.005", "from-base")
    assert params["context"] == "none" and params["window"] == version.window
    assert steps(client, run.info.run_id, "loss") == [1, 2, 3]
    final = json.loads((version.path / "adaptune-train.json").read_text())["final_loss"]
    assert client.get_metric_history(run.info.run_id, "loss")[-1].value == pytest.approx(final)
    assert run.data.metrics["cost/steps"] == 3
    assert run.data.tags["adaptune.version"] == version.version
    local = Path(client.download_artifacts(run.info.run_id, "adapter", str(tmp_path / "dl")))
    weights = "adapter_model.safetensors"
    assert (local / weights).read_bytes() == (version.path / weights).read_bytes()


def test_worker_job_tracks_gate_metrics_too(store, workspace, tmp_path) -> None:
    ingest_rows(store, tmp_path, 4)
    params = {"model": str(save_tiny(tmp_path / "tiny")), "max_steps": 2, "batch_size": 2}
    params |= {"max_len": 256, "heldout_per_window": 2, "context": "none", "track": "mlflow"}
    with one_thread():
        summary = train_job(store, None, {**params, "job_id": "j1"})
    client, run = only_run(default_uri(workspace), f"adaptune-{summary['domain']}")
    run_id = run.info.run_id
    assert run.data.params["job_id"] == "j1" and run.data.tags["adaptune.job_id"] == "j1"
    assert steps(client, run_id, "loss") == [1, 2]
    newest = summary["gate"]["newest"]
    nll = summary["gate"]["candidate"][newest]
    assert run.data.metrics[f"answer_nll/{newest}"] == pytest.approx(nll)
    assert run.data.metrics["gate/passed"] == float(summary["promoted"])
    names = {a.path for a in client.list_artifacts(run_id, "adapter")}
    assert "adapter/adapter_model.safetensors" in names


def test_tracking_uri_from_the_environment_and_failed_runs(monkeypatch, workspace, tmp_path):
    uri = (tmp_path / "elsewhere").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3's opt-in to its file store
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "mine")
    with pytest.raises(RuntimeError), tracking("mlflow", "d", "crash") as run:
        run.log_params({"lr": 0.1})
        run.log_metrics({"loss": 2.0, "nan": float("nan")}, step=1)
        raise RuntimeError("training crashed")
    _client, found = only_run(uri, "mine")
    assert found.info.status == "FAILED" and found.info.run_name == "crash"
    assert found.data.params == {"lr": "0.1"} and found.data.metrics == {"loss": 2.0}
    assert not (workspace / "mlruns").exists()


def test_only_rank_zero_tracks(monkeypatch, workspace) -> None:
    monkeypatch.setenv("RANK", "1")
    with tracking("mlflow", "d") as run:
        assert isinstance(run, NoTracker)
    with tracking(None, "d") as run:
        assert isinstance(run, NoTracker)
    assert not (workspace / "mlruns").exists()


def test_bad_tracker_and_missing_mlflow_are_config_errors(monkeypatch) -> None:
    with pytest.raises(ConfigError, match="--track mlflow"):
        check_kind("wandb")
    with pytest.raises(ConfigError, match="Unknown tracker"):
        LoopParams.from_params({"track": "tensorboard"})
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)  # as if it were not installed
    with pytest.raises(ConfigError, match="pip install mlflow-skinny"):
        check_kind("mlflow")
    assert check_kind(None) is None
