"""Where adaptune keeps its state, and the settings of a training run.

``ADAPTUNE_HOME`` (default ``./.adaptune``) holds the SQLite database, adapters and reports;
``ADAPTUNE_DATABASE_URL`` replaces the SQLite file with another database (PostgreSQL). The
workspace is private to its owner (mode 0700): it holds raw issues and what was learnt from them.

:class:`TrainConfig` is the one declaration of a training run's settings: name, type, default
and meaning. What else passes training settings on (the worker's train job, ``adaptune
compare``) holds them through :func:`train_field`, and the command line's training options are
made from its fields (:mod:`adaptune.cli.options`). It lives here, below every stage, so that
the command line builds those options without loading PyTorch (``adaptune.train`` does);
:mod:`adaptune.train.config` hands it on.

Training's environment overrides are read here too, and only here: :data:`TRAIN_ENV` lists them,
and ``adaptune.train`` reads each through its function (:func:`train_precision`,
:func:`native_kernels`, :func:`kernel_cache`) at the moment it needs it, so a changed
environment (a test's ``monkeypatch.setenv``) counts.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from adaptune.errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

log = logging.getLogger(__name__)
HOME_MODE = 0o700


class Settings(BaseModel):
    """Resolved workspace settings; build them with :func:`load_settings`."""

    model_config = ConfigDict(frozen=True)

    home: Path = Field(description="Workspace directory (database, adapters, reports).")
    database_url: str = Field(description="SQLAlchemy URL of the store.")

    @property
    def database_url_safe(self) -> str:
        """The database URL with any password masked, fit for printing."""
        from sqlalchemy.engine import make_url

        return make_url(self.database_url).render_as_string(hide_password=True)


def load_settings(home: str | Path | None = None, database_url: str | None = None) -> Settings:
    """Resolve settings from arguments, then the environment, then defaults.

    The workspace folder is created (or tightened) owner-only on the way: see :func:`ensure_home`.
    """
    raw_home = home or os.environ.get("ADAPTUNE_HOME") or ".adaptune"
    path = Path(raw_home).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"ADAPTUNE_HOME={path} is a file; point it at a directory.")
    url = database_url or os.environ.get("ADAPTUNE_DATABASE_URL") or ""
    if not url:
        url = f"sqlite:///{path / 'adaptune.db'}"
    ensure_home(path)
    return Settings(home=path, database_url=url)


def ensure_home(path: Path) -> Path:
    """Create the workspace folder with mode 0700, or tighten an existing one to owner-only.

    Its subfolders (adapters, datasets, reports...) are then out of others' reach whatever the
    umask gave them. A folder owned by someone else, or a shared one with the sticky bit (like
    ``/tmp``), is left as it is with a warning: tightening it would lock other people out.
    """
    existed = path.is_dir()
    try:
        path.mkdir(mode=HOME_MODE, parents=True, exist_ok=True)
        info = path.stat()
    except OSError as exc:
        raise ConfigError(
            f"Cannot create ADAPTUNE_HOME={path} ({exc.strerror}); "
            "point it at a folder you can write to."
        ) from None
    mode = stat.S_IMODE(info.st_mode)
    if not existed:
        wanted = HOME_MODE  # mkdir's mode went through the umask
    elif mode & 0o077:
        wanted = mode & HOME_MODE
    else:
        return path
    if mode == wanted:
        return path
    if existed and (info.st_uid != os.geteuid() or info.st_mode & stat.S_ISVTX):
        log.warning("ADAPTUNE_HOME=%s is shared (mode %o); other users may read it", path, mode)
        return path
    try:
        path.chmod(wanted)
    except OSError as exc:
        log.warning("Cannot make ADAPTUNE_HOME=%s private (%s)", path, exc.strerror)
        return path
    if existed:
        log.warning("ADAPTUNE_HOME=%s was mode %o; made it %o (owner only)", path, mode, wanted)
    return path


TRAIN_PRECISION_ENV = "ADAPTUNE_TRAIN_PRECISION"
NATIVE_KERNELS_ENV = "ADAPTUNE_NATIVE_KERNELS"
CACHE_ENV = "XDG_CACHE_HOME"

TRAIN_ENV: dict[str, str] = {
    TRAIN_PRECISION_ENV: "fp32 or bf16: what precision 'auto' resolves to on this machine "
    "(unset: bf16 where the CPU or GPU multiplies bf16 natively, else fp32); an explicit "
    "fp32 or bf16 in the run's config wins",
    NATIVE_KERNELS_ENV: "0: the compiled C kernels (attention, norms, gated SiLU) are off and "
    "their PyTorch paths run, the same results, slower (unset or any other value: on where "
    "the CPU has avx512_bf16 and gcc)",
    CACHE_ENV: "built kernels are kept in $XDG_CACHE_HOME/adaptune/kernels (unset: ~/.cache)",
}
"""The environment variables training reads, and what each means (the README's table)."""


def train_precision() -> Literal["fp32", "bf16"] | None:
    """``ADAPTUNE_TRAIN_PRECISION`` (``fp32`` or ``bf16``, any case), or ``None`` when unset;
    raises :class:`ValueError` for any other value."""
    chosen = os.environ.get(TRAIN_PRECISION_ENV, "").strip().lower()
    if chosen in ("fp32", "bf16"):
        return chosen  # type: ignore[return-value]
    if chosen:
        raise ValueError(f"{TRAIN_PRECISION_ENV} must be fp32 or bf16, not {chosen!r}")
    return None


def native_kernels() -> bool:
    """Whether the compiled kernels may run: ``False`` only for ``ADAPTUNE_NATIVE_KERNELS=0``."""
    return os.environ.get(NATIVE_KERNELS_ENV, "1") != "0"


def kernel_cache() -> Path:
    """Where built kernels are kept: ``$XDG_CACHE_HOME/adaptune/kernels`` (default
    ``~/.cache``)."""
    base = os.environ.get(CACHE_ENV) or str(Path.home() / ".cache")
    return Path(base) / "adaptune" / "kernels"


Strategy = Literal["adaptive", "from-base", "cumulative"]
Target = Literal["attention", "all-linear"]
DropoutDraw = Literal["shared", "peft"]
Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
STRATEGIES: tuple[str, ...] = ("adaptive", "from-base", "cumulative")
TARGETS: tuple[str, ...] = ("attention", "all-linear")


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Settings of one training run; validated when built."""

    strategy: Strategy = "adaptive"
    """``adaptive`` (parent adapter + replay), ``from-base`` (this window) or ``cumulative``."""
    window: str | None = None
    """The window to train on; ``None`` means the latest window among the examples."""
    max_steps: int | None = None
    """Optimizer steps to run; unset (``None``): as many as ``epochs`` passes take."""
    epochs: float = 1.0
    """Passes over the packed rows when ``max_steps`` is not set."""
    lr: float = 2e-4
    """Peak learning rate of AdamW (after warm-up)."""
    batch_size: int = 4
    """Packed rows per accumulation step, per process."""
    grad_accum: int = 1
    """Accumulation steps per optimizer step (rows per step = batch_size × grad_accum ×
    processes)."""
    forward_tokens: int | None = 1024
    """Most tokens (padding included) one forward pass takes: a step's rows go through the
    model in groups that fit, their gradients accumulated (one row at least per pass). It bounds
    activation memory (about 1 GB per 1,024 tokens on SmolLM2-135M) without changing what a step
    learns. ``None``: ``batch_size`` rows per pass."""
    max_len: int = 1024
    """Tokens per packed row, and the longest a single example may be after truncation."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA input during training."""
    dropout_draw: DropoutDraw = "shared"
    """``shared``: sparse drops, one draw per input shared by the projections that read it
    (:mod:`adaptune.train.dropout`, much cheaper on a CPU); ``peft``: PEFT's own per-module
    ``nn.Dropout``."""
    target: Target = "attention"
    """``attention`` (q, k, v, o projections) or ``all-linear`` (every linear but the head)."""
    replay_share: float = 0.25
    """``adaptive`` only: earlier windows' examples replayed, as a share of this window's count."""
    seed: int = 0
    """Seeds LoRA initialisation, data order, dropout and replay selection."""
    checkpoint_every: int = 50
    """Optimizer steps between checkpoints; 0 turns them off."""
    grad_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about a third more time."""
    release_memory: bool = False
    """Give freed activations back to the system at once: flat RSS, slower.

    glibc's, see :mod:`adaptune.train.memory`: peak RSS stays at what is live, but every fresh
    page faults, which costs throughput (``bench/train_throughput.py --release-memory``
    measures it; a hand measurement in ``bench/results/hand_measurements.md``)."""
    fast: bool = True
    """Apply the CPU speed-ups of :mod:`adaptune.train.fast` for the run (its
    :func:`~adaptune.train.fast.accelerate`): each packed example attended on its own, in bf16
    on a CPU by the blocked or compiled kernel with the rotary embedding inside, frozen MLPs and
    RMSNorms with leaner backward passes and one-pass compiled kernels. They change how a step
    runs, not what it computes (the same sums, rounded differently in bf16), so the run hash
    leaves this out. ``False``: the model's own transformers forward everywhere, to compare or
    debug. ``ADAPTUNE_NATIVE_KERNELS=0`` turns off the compiled kernels only; the LoRA dropout
    draw is ``dropout_draw``'s either way."""
    precision: Precision = "auto"
    """``auto`` (``bf16`` where the CPU or GPU has it natively), ``fp32`` or ``bf16``.

    ``bf16``: the forward pass's matmuls in bf16 under autocast, LoRA weights, optimizer and
    loss in fp32 (:mod:`adaptune.train.precision`); ``fp32``: everything in fp32; ``auto``:
    ``bf16`` where the CPU or GPU does bf16 natively, else ``fp32``. :func:`adaptune.train.train`
    records the precision it resolved to."""
    model: str | None = None
    """Base model: a local folder or a cached Hugging Face id; unset (``None``): SmolLM2."""
    warmup_ratio: float = 0.05
    """Share of the steps spent warming the learning rate up linearly, before the cosine decay."""
    weight_decay: float = 0.0
    """AdamW weight decay on the LoRA weights."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm; 0 turns clipping off."""

    def __post_init__(self) -> None:
        _check(self.strategy in STRATEGIES, f"strategy must be one of {', '.join(STRATEGIES)}")
        _check(self.target in TARGETS, f"target must be one of {', '.join(TARGETS)}")
        _check(self.max_steps is None or self.max_steps > 0, "max_steps must be positive")
        _check(self.epochs > 0, "epochs must be positive")
        _check(0 < self.lr < 1, "lr must be in (0, 1)")
        for name in ("batch_size", "grad_accum", "lora_r", "lora_alpha"):
            _check(getattr(self, name) > 0, f"{name} must be positive")
        _check(self.max_len >= 64, "max_len must be at least 64 tokens")
        _check(self.forward_tokens is None or self.forward_tokens > 0, "forward_tokens > 0")
        _check(0 <= self.lora_dropout < 1, "lora_dropout must be in [0, 1)")
        _check(self.dropout_draw in ("shared", "peft"), "dropout_draw must be shared or peft")
        _check(self.precision in PRECISIONS, "precision must be auto, fp32 or bf16")
        _check(0 <= self.replay_share <= 10, "replay_share must be in [0, 10]")
        _check(self.checkpoint_every >= 0, "checkpoint_every must be 0 (off) or positive")
        _check(0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)")
        _check(self.weight_decay >= 0 and self.max_grad_norm >= 0, "decay and clipping are >= 0")

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON values."""
        return asdict(self)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(f"Training config: {message}.")


TRAIN_SETTING = "adaptune.train_setting"
"""Metadata key of a :func:`train_field`: the :class:`TrainConfig` field it holds."""


def train_field(name: str, default: Any = MISSING) -> Any:
    """A dataclass field that holds :class:`TrainConfig`'s setting ``name``.

    Its default is TrainConfig's unless ``default`` says otherwise, its meaning is TrainConfig's
    (the field's own docstring, if any, only adds to it), and :func:`train_settings` hands its
    value back under TrainConfig's name: a config that passes training settings on does not
    declare them again.
    """
    known = {f.name: f for f in fields(TrainConfig)}
    if name not in known:
        raise TypeError(f"train_field: TrainConfig has no setting {name!r}")
    value = known[name].default if default is MISSING else default
    return field(default=value, metadata={TRAIN_SETTING: name})


def train_names(config: DataclassInstance) -> dict[str, str]:
    """Field name → TrainConfig setting, for the :func:`train_field` fields of a dataclass."""
    return {
        f.name: f.metadata[TRAIN_SETTING] for f in fields(config) if TRAIN_SETTING in f.metadata
    }


def train_settings(config: DataclassInstance) -> dict[str, Any]:
    """The training settings a dataclass instance holds, by TrainConfig name (for its
    constructor)."""
    return {setting: getattr(config, name) for name, setting in train_names(config).items()}
