"""Where adaptune keeps its state: one workspace directory and one database URL.

``ADAPTUNE_HOME`` (default ``./.adaptune``) holds the SQLite database, adapters and reports;
``ADAPTUNE_DATABASE_URL`` replaces the SQLite file with another database (PostgreSQL). The
workspace is private to its owner (mode 0700): it holds raw issues and what was learnt from them.

Training's environment overrides are read here too, and only here: :data:`TRAIN_ENV` lists them,
and ``adaptune.train`` reads each through its function (:func:`train_precision`,
:func:`native_kernels`, :func:`kernel_cache`) at the moment it needs it, so a changed
environment (a test's ``monkeypatch.setenv``) counts.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from adaptune.errors import ConfigError

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
