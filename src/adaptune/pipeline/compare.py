"""``adaptune compare``: train each strategy's chain over windows, measure it, write the report.

For windows W_first..W_last and each strategy, the chain is trained (adapters already trained
for the same data and config are reused), then every adapter is measured on every window's
held-out set (answer NLL, lower is better): the continual-learning matrix R[i][j], with ACC,
BWT and FWT (Lopez-Paz & Ranzato, 2017) against the base model. Beside it: the four ways to
answer (base, base + retrieval, adapter, adapter + retrieval), the retrieval-only baseline, a
style-only control (the last window's answers paired with the wrong questions), fix ranking
against hard negatives, memory probes, bootstrap CIs and paired differences; and the service's
triage classifier against a tf-idf baseline, and its duplicate search (recall@k).
"""

from __future__ import annotations

import json
import platform
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from adaptune.config import TrainConfig, train_field, train_settings
from adaptune.errors import ConfigError
from adaptune.evaluate.chains import measure_chains
from adaptune.pipeline import Plan, plan, run_iteration
from adaptune.registry import list_versions
from adaptune.registry.records import AdapterVersion
from adaptune.store import Store
from adaptune.train.loop import device
from adaptune.train.model import load_base
from adaptune.train.precision import resolve

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

_REPLAY = TrainConfig().replay_share
SPECS = {
    "adaptive": ("adaptive", _REPLAY),
    "adaptive-no-replay": ("adaptive", 0.0),
    "from-base": ("from-base", _REPLAY),
    "cumulative": ("cumulative", _REPLAY),
}
"""Strategy label → (trainer strategy, replay share: TrainConfig's default, or none)."""
REUSE_KEYS = (
    "max_steps",
    "epochs",
    "batch_size",
    "max_len",
    "lr",
    "replay_share",
    "seed",
    "model",
    "context",
)


@dataclass(frozen=True, slots=True)
class CompareConfig:
    """What to compare and how hard to measure."""

    strategies: tuple[str, ...] = ("adaptive", "from-base", "cumulative")
    """Strategy labels (see :data:`SPECS`)."""
    first: int = 1
    """First window (1-based)."""
    last: int = 4
    """Last window (1-based, inclusive)."""
    # Training settings (train_field): TrainConfig's meaning and, unless given, its default.
    max_steps: int | None = train_field("max_steps", 12)
    """12: short chains, quick to compare (``adaptune compare`` offers the same default)."""
    epochs: float = train_field("epochs")
    batch_size: int = train_field("batch_size")
    max_len: int = train_field("max_len", 512)
    """Also the tokens per evaluated example (``adaptune compare`` offers the same default)."""
    lr: float = train_field("lr")
    context: str = "retrieved"
    """``retrieved`` or ``none``: similar earlier fixes in the prompts."""
    model: str | None = train_field("model")
    heldout_per_window: int = 24
    """Held-out examples measured per window (a seeded sample; cost grows with it)."""
    ranking_examples: int = 16
    """Held-out issues whose fix is ranked against 50 candidates."""
    probes_per_window: int = 8
    """Memory probes per trained window (0 to skip)."""
    style_control: bool = True
    """Train the style-only control on the last window."""
    generate: int = 16
    """Held-out questions answered by generation in each way to answer (0: none)."""
    backend: str = "auto"
    """Generation engine: ``auto`` (llama.cpp when installed), ``llamacpp``, ``transformers``."""
    seed: int = train_field("seed")
    """Also the seed of sampling and bootstrap."""

    def __post_init__(self) -> None:
        unknown = [s for s in self.strategies if s not in SPECS]
        if unknown:
            raise ConfigError(f"Unknown strategies {unknown}; use {', '.join(SPECS)}.")
        if not 1 <= self.first <= self.last:
            raise ConfigError("--windows must be FIRST-LAST with 1 <= FIRST <= LAST.")


def _train_config(cfg: CompareConfig, strategy: str, window: str, replay: float) -> TrainConfig:
    return TrainConfig(**train_settings(cfg), strategy=strategy, window=window, replay_share=replay)


def _reusable(
    store: Store, p: Plan, label: str, config: TrainConfig, parent: str | None
) -> AdapterVersion | None:
    """An adapter already trained with the same data, config and parent, if any."""
    want = {**config.to_dict(), "context": p.context}
    precision = resolve(config.precision, device())  # adapters record what "auto" became
    for v in reversed(list_versions(store, p.domain)):
        same = v.strategy == label and v.window == p.window and v.dataset == p.build
        same = same and v.config.get("precision", "fp32") == precision  # older ones: fp32
        if same and v.parent == parent and all(v.config.get(k) == want.get(k) for k in REUSE_KEYS):
            return v
    return None


def train_chain(
    store: Store,
    domain: str | None,
    cfg: CompareConfig,
    label: str,
    windows: Sequence[str],
    models: tuple[PreTrainedModel, PreTrainedTokenizerBase],
    say: Callable[[str], None],
) -> list[AdapterVersion]:
    """The adapters of one strategy over ``windows``, trained or reused."""
    strategy, replay = SPECS[label]
    chain: list[AdapterVersion] = []
    for window in windows:
        parent = chain[-1] if chain and strategy == "adaptive" else None
        p = plan(store, domain, strategy, window, cfg.context)
        p = replace(p, parent=parent)
        config = _train_config(cfg, strategy, window, replay)
        found = _reusable(store, p, label, config, parent.version if parent else None)
        if found is None:
            say(f"training {label} on {window}")
            found = run_iteration(
                store, p, config, model=models[0], tokenizer=models[1], label=label
            )
        chain.append(found)
    return chain


def style_control(
    store: Store,
    domain: str | None,
    cfg: CompareConfig,
    window: str,
    models: tuple[PreTrainedModel, PreTrainedTokenizerBase],
    say: Callable[[str], None],
) -> AdapterVersion | None:
    """An adapter trained on ``window``'s answers paired with the wrong questions."""
    p = plan(store, domain, "from-base", window, cfg.context)
    train = [e for e in p.examples if e.window == window and e.split == "train"]
    answers = [e.answer for e in train]
    random.Random(cfg.seed).shuffle(answers)
    shifted = answers[1:] + answers[:1]  # every question gets another issue's fix
    wrong = {e.id: replace(e, answer=a) for e, a in zip(train, shifted, strict=True)}
    p = replace(p, examples=tuple(wrong.get(e.id, e) for e in p.examples))
    config = _train_config(cfg, "from-base", window, 0.0)
    found = _reusable(store, p, "style-control", config, None)
    if found is None:
        say(f"training the style-only control on {window}")
        found = run_iteration(
            store, p, config, model=models[0], tokenizer=models[1], label="style-control"
        )
    return found


def compare(
    store: Store,
    domain: str | None,
    cfg: CompareConfig,
    progress: Callable[[str], None] | None = None,
    model: PreTrainedModel | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> tuple[dict[str, Any], Path]:
    """Train and measure every strategy; returns the metrics and the report's folder."""
    from adaptune.evaluate.report import render_report

    say = progress or (lambda _m: None)
    p0 = plan(store, domain, "from-base", None, cfg.context)
    if cfg.last > len(p0.windows):
        raise ConfigError(f"--windows goes to {cfg.last}; the build has {len(p0.windows)}.")
    windows = list(p0.windows[cfg.first - 1 : cfg.last])
    if model is None:
        model, tokenizer, _info = load_base(cfg.model, store.settings.home)
    elif cfg.backend == "auto":  # a model handed in need not match the default GGUF
        cfg = replace(cfg, backend="transformers")
    chains = {
        s: train_chain(store, domain, cfg, s, windows, (model, tokenizer), say)
        for s in cfg.strategies
    }
    control = (
        style_control(store, domain, cfg, windows[-1], (model, tokenizer), say)
        if cfg.style_control
        else None
    )
    metrics = measure_chains(
        p0, windows, chains, control, (model, tokenizer), cfg, say, store.settings.home, store
    )
    created = datetime.now(UTC)
    rid = f"{created:%Y%m%d-%H%M%S}-{p0.domain}"
    metrics.update(
        id=rid,
        created_at=created.isoformat(timespec="seconds"),
        domain=p0.domain,
        build=p0.build,
        machine=_machine(),
        config=asdict(cfg),
        windows=windows,
    )
    folder = store.settings.home / "reports" / rid
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=2, default=_jsonable) + "\n")
    tmp.replace(folder / "metrics.json")
    render_report(json.loads((folder / "metrics.json").read_text()), folder)
    return metrics, folder


def _machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
