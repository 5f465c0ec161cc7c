"""The worker's settings, read from the environment by :meth:`WorkerConfig.from_env`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from adaptune.errors import ConfigError
from adaptune.notify.text import FORMATS


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number; set it to e.g. {default:g}.") from None


@dataclass(frozen=True)
class WorkerConfig:
    """How the worker polls, leases jobs, triggers training and notifies."""

    poll_s: float = 2.0
    """Seconds between polls of an empty queue (``ADAPTUNE_WORKER_POLL_S``)."""
    lease_s: float = 300.0
    """Lease of a claimed job; renewed every third of it (``ADAPTUNE_JOB_LEASE_S``)."""
    train_threshold: int = 50
    """New resolved issues + corrected answers that queue a training job; 0 turns the automatic
    trigger off (``ADAPTUNE_TRAIN_THRESHOLD``)."""
    notify_urls: tuple[str, ...] = field(default_factory=tuple)
    """Webhook endpoints told about job ends and promotions (``ADAPTUNE_NOTIFY_URLS``, comma
    separated)."""
    notify_secret: str | None = field(default=None, repr=False)
    """HMAC key that signs notification bodies (``ADAPTUNE_NOTIFY_SECRET``)."""
    notify_format: str = "slack"
    """``slack`` or ``json`` (``ADAPTUNE_NOTIFY_FORMAT``)."""

    def __post_init__(self) -> None:
        if self.poll_s <= 0 or self.lease_s <= 0:
            raise ConfigError(
                "ADAPTUNE_WORKER_POLL_S and ADAPTUNE_JOB_LEASE_S must be positive seconds."
            )
        if self.train_threshold < 0:
            raise ConfigError("ADAPTUNE_TRAIN_THRESHOLD must be 0 (off) or a positive count.")
        if self.notify_format not in FORMATS:
            raise ConfigError(
                f"ADAPTUNE_NOTIFY_FORMAT={self.notify_format!r}: use one of {', '.join(FORMATS)}."
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerConfig:
        """Settings from ``env`` (default: the process environment), defaults for the rest."""
        env = os.environ if env is None else env
        urls = env.get("ADAPTUNE_NOTIFY_URLS", "")
        return cls(
            poll_s=_number(env, "ADAPTUNE_WORKER_POLL_S", cls.poll_s),
            lease_s=_number(env, "ADAPTUNE_JOB_LEASE_S", cls.lease_s),
            train_threshold=int(_number(env, "ADAPTUNE_TRAIN_THRESHOLD", cls.train_threshold)),
            notify_urls=tuple(u.strip() for u in urls.split(",") if u.strip()),
            notify_secret=env.get("ADAPTUNE_NOTIFY_SECRET") or None,
            notify_format=(env.get("ADAPTUNE_NOTIFY_FORMAT") or "slack").strip().lower(),
        )
