"""The training job of the loop: build → train from production → measure → promotion gate.

:func:`train_job` is what the worker runs for a ``train`` job. It builds the domain's dataset
afresh (new issues and feedback land in the newest window), trains that window adaptively from
the domain's ``production`` adapter (else from the newest earlier adaptive adapter, else from
the base model) with replay and retrieved context, measures the candidate and production on the
held-out sets of the newest and earlier windows, and lets :func:`adaptune.registry.gate.gate`
decide: ``production`` when it passes, ``candidate`` otherwise, the reason recorded on the
version's metrics.

A job may run twice (a crashed worker's lease expires). Its ``job_id`` is stored in the
adapter's config: a second run finds that adapter instead of training again, and once the
decision is recorded it only reports it. Training runs in a folder named after the job, so a
retry resumes from the last checkpoint.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from adaptune.config import TrainConfig, train_field, train_settings
from adaptune.dataset.artifacts import find_build, iter_examples, read_manifest
from adaptune.errors import ConfigError
from adaptune.memory.context import CONTEXTS
from adaptune.pipeline import Plan, plan
from adaptune.pipeline.dataset_build import build_dataset
from adaptune.registry import list_versions, promote, register, set_metrics
from adaptune.registry.gate import gate
from adaptune.registry.records import AdapterVersion
from adaptune.store import Store
from adaptune.store.domains import resolve_domain
from adaptune.track import Tracker, check_kind, log_version, step_logger, tracking

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from adaptune.evaluate.measure import Evaluator
    from adaptune.train.loop import Progress
    from adaptune.train.model import BaseInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoopParams:
    """The parameters of a ``train`` job (every one optional).

    The training settings among them are :class:`TrainConfig`'s (:func:`train_field`): its
    meaning and its default; ``replay`` is its ``replay_share``.
    """

    model: str | None = train_field("model")
    max_steps: int | None = train_field("max_steps")
    epochs: float = train_field("epochs")
    batch_size: int = train_field("batch_size")
    max_len: int = train_field("max_len")
    """Also the tokens per measured example."""
    lr: float = train_field("lr")
    replay: float = train_field("replay_share")
    context: str = "retrieved"
    """``retrieved`` (similar resolved issues in every prompt) or ``none``."""
    heldout_per_window: int = 8
    """Held-out examples measured per window (a seeded sample): the gate's cost."""
    eval_windows: int | None = None
    """How many of the newest windows are measured (``None``: all)."""
    tolerance: float = 0.02
    """Relative NLL regression forgiven on an older window (0.02 = 2 %)."""
    promote: bool = True
    """``False``: a passing gate leaves the version ``candidate`` for the caller to promote."""
    checkpoint_every: int = train_field("checkpoint_every")
    """A retried job resumes from the last checkpoint."""
    job_id: str | None = None
    """The job's id: makes a retried job find its adapter instead of training twice."""
    seed: int = train_field("seed")
    """Also the seed of the held-out sample."""
    track: str | None = None
    """``mlflow`` logs the run (config, per-step loss, gate metrics, adapter); ``None``: off."""

    def __post_init__(self) -> None:
        if self.context not in CONTEXTS:
            raise ConfigError(f"Job parameter context must be retrieved or none: {self.context!r}.")
        if self.heldout_per_window < 1:
            raise ConfigError("Job parameter heldout_per_window must be at least 1.")
        if self.eval_windows is not None and self.eval_windows < 1:
            raise ConfigError("Job parameter eval_windows must be at least 1 (or null for all).")
        if not math.isfinite(self.tolerance):
            raise ConfigError("Job parameter tolerance must be a finite number (e.g. 0.02).")
        check_kind(self.track)

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> LoopParams:
        """The parameters of a job's payload; unknown keys are logged and ignored."""
        known = {f.name for f in fields(cls)}
        given = dict(params or {})
        unknown = sorted(set(given) - known)
        if unknown:
            log.warning("train job: ignoring unknown parameters %s", ", ".join(unknown))
        try:
            return cls(**{k: v for k, v in given.items() if k in known})
        except TypeError as exc:
            raise ConfigError(f"Bad train job parameters ({exc}); see LoopParams.") from None


def train_job(
    store: Store,
    domain: str | None,
    params: Mapping[str, Any] | None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run one iteration of the loop for ``domain``; returns a JSON-ready summary.

    Keys: ``domain``, ``version``, ``parent``, ``window``, ``build``, ``promoted``, ``alias``
    (``production`` or ``candidate``), ``gate`` (``passed``, ``reason``, ``candidate`` and
    ``production`` NLL per window, ``tolerance``, …) and ``cost``.
    """
    from adaptune.train.model import load_base

    p = LoopParams.from_params(params)
    say = progress or (lambda _m: None)
    with store.begin() as conn:
        name = resolve_domain(conn, domain).name
    done = _job_version(list_versions(store, name), p.job_id)
    if done is not None and "gate" in done.metrics:
        say(f"job {p.job_id} already decided on {done.version}")
        _reapply(store, done)
        return _summary(done, done.metrics["gate"])
    data = build_dataset(store, name, progress=say)
    production = _aliased(list_versions(store, name), "production")
    the_plan = plan(
        store,
        name,
        "adaptive",
        _newest_trainable(store, name, data.build_id),
        p.context,
        parent=f"{name}:{production.version}" if production else None,
        build_id=data.build_id,
    )
    lm, tokenizer, info = load_base(p.model, store.settings.home)
    with tracking(p.track, name, f"job {p.job_id}", store.settings.home) as run:
        run.set_tags({"adaptune.job_id": p.job_id})
        if done is None:
            base_hash = _base_hash(the_plan.parent, info, lm)
            done = _train(store, the_plan, p, (lm, tokenizer, info.id, base_hash), say, run)
        record = _decide(the_plan, done, production, p, (lm, tokenizer), say)
        record["build"] = data.build_id
        record["auto_promote"] = p.promote
        done = _record(store, done, record)
        log_version(run, done)
    return _summary(done, record)


def _newest_trainable(store: Store, domain: str, build_id: str) -> str | None:
    """The newest window with training examples (a window holding only a held-out correction,
    say, has nothing to train on: its examples are still measured by the gate)."""
    folder = find_build(store.settings.home, domain, build_id)
    order = [w["name"] for w in read_manifest(folder)["tasks"]["qa"]["windows"]]
    trainable = {e.window for e in iter_examples(folder, "qa") if e.split == "train"}
    return next((w for w in reversed(order) if w in trainable), None)


def _job_version(versions: Sequence[AdapterVersion], job_id: str | None) -> AdapterVersion | None:
    """The adapter an earlier run of the same job registered, if any."""
    if job_id is None:
        return None
    return next((v for v in versions if v.config.get("job_id") == job_id), None)


def _aliased(versions: Sequence[AdapterVersion], alias: str) -> AdapterVersion | None:
    return next((v for v in versions if alias in v.aliases), None)


def _base_hash(parent: AdapterVersion | None, info: BaseInfo, lm: PreTrainedModel) -> str:
    """The base model's hash in the convention the parent's lineage recorded.

    ``adaptune train`` records the weight files' hash; older ``compare`` runs recorded the
    parameters' hash (it now records the files' hash too); either names the same weights.
    """
    if parent is None or parent.base_model_hash in (None, info.sha256):
        return str(info.sha256)
    from adaptune.train.model import params_sha256

    params_hash = params_sha256(lm)
    if params_hash == parent.base_model_hash:
        return params_hash
    raise ConfigError(
        f"The parent adapter {parent.version} was trained on another base model "
        f"({parent.base_model}); run the job with the parameter model={parent.base_model!r}."
    )


def _train(
    store: Store, the_plan: Plan, p: LoopParams, base: tuple, say: Callable, run: Tracker
) -> AdapterVersion:
    """Train the plan's window and register the adapter with the job's id."""
    from adaptune.train import CheckpointError, train

    lm, tokenizer, base_id, base_hash = base
    config = TrainConfig(**train_settings(p), strategy="adaptive", window=the_plan.window)
    parent = the_plan.parent
    run_dir = the_plan.run_dir
    if p.job_id:
        run_dir = run_dir.parent / ("job-" + re.sub(r"[^\w.-]", "_", p.job_id))
    say(f"training {the_plan.window} from {parent.version if parent else 'the base model'}")

    def say_step(pr: Progress) -> None:
        say(f"step {pr.step}/{pr.total_steps} loss {pr.loss:.3f}")

    run.log_params({**config.to_dict(), "context": the_plan.context, "job_id": p.job_id})
    step = step_logger(run, say_step)
    args = (the_plan.examples, config, run_dir, parent.path if parent else None, lm, tokenizer)
    try:
        result = train(*args, progress=step, resume=p.job_id is not None)
    except CheckpointError as exc:  # the data changed since the crash: start the run over
        log.warning("cannot resume %s (%s); training from the start", run_dir, exc)
        shutil.rmtree(run_dir, ignore_errors=True)
        result = train(*args, progress=step, resume=False)
    version = register(
        store,
        the_plan.domain,
        result.adapter_dir,
        strategy="adaptive",
        window=the_plan.window,
        base_model=base_id,
        base_model_hash=base_hash,
        dataset=the_plan.build,
        parent=f"{parent.domain}:{parent.version}" if parent else None,
        config={
            **config.to_dict(),
            "context": the_plan.context,
            "replayed": result.manifest.get("replayed"),
            "job_id": p.job_id,
        },
        cost=result.cost,
    )
    shutil.rmtree(run_dir, ignore_errors=True)
    return version


def _decide(
    the_plan: Plan,
    version: AdapterVersion,
    production: AdapterVersion | None,
    p: LoopParams,
    models: tuple[PreTrainedModel, PreTrainedTokenizerBase],
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Measure the candidate and its reference on the held-out windows; the gate decides."""
    from adaptune.evaluate.chains import heldout_sets
    from adaptune.evaluate.measure import Evaluator

    windows = list(the_plan.windows[-p.eval_windows :] if p.eval_windows else the_plan.windows)
    held = heldout_sets(the_plan.examples, windows, p.heldout_per_window, p.seed)
    held = {w: rows for w, rows in held.items() if rows}
    newest = next(reversed(held), windows[-1])
    ev = Evaluator(models[0], models[1], p.max_len)
    ctx = the_plan.context == "retrieved"
    say(f"measuring {version.version} on {len(held)} held-out windows")
    cand = _measure(ev, version.path, held, ctx)
    if production is not None and production.version == version.version:
        production = None  # promoted by hand meanwhile; compare with the base model instead
    ref_name = production.version if production else "the base model"
    say(f"measuring {ref_name}")
    ref = _measure(ev, production.path if production else None, held, ctx)
    prod, base = (ref, None) if production else (None, ref)
    decision = gate(cand, prod, newest, p.tolerance, base=base)
    say(("promote: " if decision.passed else "candidate: ") + decision.reason)
    return {
        **decision.to_dict(),
        "job_id": p.job_id,
        "candidate": _plain(cand),
        "production": _plain(prod or {}),
        "base": _plain(base) if base is not None else None,
        "production_version": production.version if production else None,
        "heldout": {w: len(rows) for w, rows in held.items()},
        "decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _measure(
    ev: Evaluator, adapter: Path | None, held: Mapping[str, list], ctx: bool
) -> dict[str, float]:
    """Mean answer NLL per window."""
    return {w: float(np.mean(ev.nll(adapter, rows, ctx))) for w, rows in held.items()}


def _plain(metrics: Mapping[str, float]) -> dict[str, float | None]:
    """JSON-safe per-window values (``None`` for NaN or infinity)."""
    return {w: round(v, 6) if math.isfinite(v) else None for w, v in metrics.items()}


def _record(store: Store, version: AdapterVersion, record: dict[str, Any]) -> AdapterVersion:
    """Store the decision on the version, then point the alias it earned at it."""
    set_metrics(store, version.version, {"answer_nll": record["candidate"], "gate": record})
    return promote(store, version.version, _alias(record))


def _alias(record: Mapping[str, Any]) -> str:
    """The alias a decision earns: production when the gate passed and the job may promote."""
    return (
        "production" if record.get("passed") and record.get("auto_promote", True) else "candidate"
    )


def _reapply(store: Store, version: AdapterVersion) -> None:
    """Finish a decided job whose alias was not set yet (the worker died in between).

    Only while the version is still the domain's newest: otherwise the loop has moved on and
    re-pointing an alias at it would undo a later decision.
    """
    alias = _alias(version.metrics["gate"])
    newest = list_versions(store, version.domain)[-1]
    if newest.version == version.version and alias not in version.aliases:
        promote(store, version.version, alias)


def _summary(version: AdapterVersion, record: Mapping[str, Any]) -> dict[str, Any]:
    """The job's result, as the worker stores it and the API returns it."""
    alias = _alias(record)
    return {
        "domain": version.domain,
        "version": version.version,
        "parent": version.parent,
        "window": version.window,
        "build": record.get("build"),
        "promoted": alias == "production",
        "alias": alias,
        "gate": dict(record),
        "cost": dict(version.cost),
    }


__all__ = ["LoopParams", "train_job"]
