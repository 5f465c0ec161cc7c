"""Experiment tracking: a training run's parameters, per-step loss, metrics and adapter.

``adaptune train --track mlflow`` and the worker's ``train`` jobs (parameter ``track``) open a
run with :func:`tracking` and log through the :class:`Tracker` it yields: the training config as
parameters, the loss of every optimizer step (:func:`step_logger` wraps the trainer's progress
callback), evaluation metrics when the run measures any, and the adapter folder as an artifact.

MLflow is imported only when asked for. Its tracking URI comes from ``MLFLOW_TRACKING_URI``;
without one, runs go to a local store under ``ADAPTUNE_HOME/mlruns`` (an SQLite database plus
an artifact folder: MLflow 3 refuses its plain-file store unless ``MLFLOW_ALLOW_FILE_STORE`` is
set). The experiment is ``MLFLOW_EXPERIMENT_NAME``, else ``adaptune-<domain>``. Under torchrun
only rank 0 logs.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from adaptune.config import load_settings
from adaptune.errors import ConfigError

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

TRACKERS: tuple[str, ...] = ("mlflow",)
"""Tracking back-ends ``--track`` accepts."""
_MAX_PARAM = 6000  # MLflow's limit on a parameter value


class Tracker(Protocol):
    """Where a training run's numbers go (one run per :func:`tracking` block)."""

    run_id: str | None
    """The back-end's id of the run (``None`` when not tracking)."""

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record settings of the run (values are stored as text)."""

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Record numbers, at optimizer step ``step`` when given."""

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Label the run (adapter version, job id …)."""

    def log_artifacts(self, folder: Path, name: str) -> None:
        """Copy ``folder`` into the run's artifacts as ``name``."""


class StepProgress(Protocol):
    """What :func:`step_logger` reads of a trainer's progress (``adaptune.train.Progress``)."""

    @property
    def step(self) -> int: ...
    @property
    def loss(self) -> float: ...
    @property
    def tokens_per_s(self) -> float: ...


class Version(Protocol):
    """What :func:`log_version` reads of a registered adapter (``AdapterVersion``)."""

    @property
    def version(self) -> str: ...
    @property
    def parent(self) -> str | None: ...
    @property
    def cost(self) -> dict[str, Any]: ...
    @property
    def metrics(self) -> dict[str, Any]: ...
    @property
    def weights_sha256(self) -> str: ...
    @property
    def path(self) -> Path: ...


class NoTracker:
    """Tracking off: every call does nothing."""

    run_id: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Do nothing."""

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Do nothing."""

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Do nothing."""

    def log_artifacts(self, folder: Path, name: str) -> None:
        """Do nothing."""


class MlflowTracker:
    """One MLflow run, written through ``MlflowClient`` (no global active-run state)."""

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.client, self.run_id = client, run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record settings of the run (values are stored as text)."""
        from mlflow.entities import Param

        items = [Param(_key(k), str(v)[:_MAX_PARAM]) for k, v in params.items()]
        self.client.log_batch(self.run_id, params=items)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Record the finite numbers of ``metrics`` (NaN and infinities are left out)."""
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(_key(k), float(v), now, step or 0)
            for k, v in metrics.items()
            if v is not None and math.isfinite(float(v))
        ]
        if items:
            self.client.log_batch(self.run_id, metrics=items)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Label the run (adapter version, job id …)."""
        for key, value in tags.items():
            self.client.set_tag(self.run_id, _key(key), str(value))

    def log_artifacts(self, folder: Path, name: str) -> None:
        """Copy ``folder`` into the run's artifacts as ``name``."""
        self.client.log_artifacts(self.run_id, str(folder), name)


def check_kind(kind: str | None) -> str | None:
    """``kind`` if it names a tracking back-end (or is empty); a ConfigError otherwise."""
    if kind in (None, "", "none"):
        return None
    if kind not in TRACKERS:
        raise ConfigError(f"Unknown tracker {kind!r}: use --track mlflow, or leave it out.")
    _mlflow_client()  # fail before training, not after
    return kind


@contextmanager
def tracking(
    kind: str | None, domain: str, run_name: str | None = None, home: Path | None = None
) -> Iterator[Tracker]:
    """A tracked run for the block: FINISHED when it ends, FAILED when it raises.

    ``kind`` is ``None`` (tracking off) or ``"mlflow"``. ``home`` is the workspace whose
    ``mlruns`` folder is the default store (``ADAPTUNE_HOME`` when not given).
    """
    if check_kind(kind) is None or _rank() != 0:
        yield NoTracker()
        return
    client, run_id = _start_mlflow(domain, run_name, home)
    try:
        yield MlflowTracker(client, run_id)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")


P = TypeVar("P", bound=StepProgress)


def step_logger(tracker: Tracker, then: Callable[[P], None] | None = None) -> Callable[[P], None]:
    """A trainer progress callback logging ``loss`` and ``tokens_per_s`` per step, then ``then``."""

    def on_step(progress: P) -> None:
        numbers = {"loss": progress.loss, "tokens_per_s": progress.tokens_per_s}
        tracker.log_metrics(numbers, step=progress.step)
        if then is not None:
            then(progress)

    return on_step


def flat_metrics(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Numbers of a nested mapping as ``a/b`` keys (booleans as 0/1; text and None dropped)."""
    out: dict[str, float] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_metrics(value, name + "/"))
        elif isinstance(value, bool | int | float) and math.isfinite(float(value)):
            out[name] = float(value)
    return out


def log_version(tracker: Tracker, version: Version) -> None:
    """Finish a run with its registered adapter: cost and metrics, version tags, the folder."""
    tracker.log_metrics(flat_metrics({"cost": version.cost, **version.metrics}))
    tags = {"adaptune.version": version.version, "adaptune.parent": version.parent or "base"}
    tracker.set_tags({**tags, "adaptune.weights_sha256": version.weights_sha256})
    tracker.log_artifacts(Path(version.path), "adapter")


def default_uri(home: Path) -> str:
    """The local store under ``home/mlruns`` (an SQLite database)."""
    return "sqlite:///" + str((home / "mlruns" / "mlflow.db").resolve())


def _start_mlflow(domain: str, run_name: str | None, home: Path | None) -> tuple[MlflowClient, str]:
    """A new run in the domain's experiment; the experiment is created when missing."""
    client_cls = _mlflow_client()
    home = home if home is not None else _home()
    uri = os.environ.get("MLFLOW_TRACKING_URI") or default_uri(home)
    artifacts = None
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        (home / "mlruns").mkdir(parents=True, exist_ok=True)
        artifacts = (home / "mlruns" / "artifacts").resolve().as_uri()
    client = client_cls(tracking_uri=uri)
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or f"adaptune-{domain}"
    found = client.get_experiment_by_name(name)
    experiment = found.experiment_id if found else client.create_experiment(name, artifacts)
    run = client.create_run(experiment, run_name=run_name, tags={"adaptune.domain": domain})
    log.info("Tracking run %s in experiment %s at %s", run.info.run_id, name, uri)
    return client, run.info.run_id


def _mlflow_client() -> type[MlflowClient]:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ConfigError(
            "--track mlflow needs MLflow: pip install mlflow-skinny (or mlflow), "
            "or leave --track out."
        ) from None
    return MlflowClient


def _home() -> Path:
    return load_settings().home


def _rank() -> int:
    """This process's rank under torchrun / accelerate launch (0 when not distributed)."""
    return int(os.environ.get("RANK", "0"))


def _key(name: str) -> str:
    """A name MLflow accepts (letters, digits, ``_ - . / :`` and spaces)."""
    return re.sub(r"[^\w\-./: ]", "_", str(name))[:250]
