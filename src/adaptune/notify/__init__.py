"""Outgoing notifications: job ends and promotions, sent as signed webhooks (Slack-compatible).

:func:`notify` puts an event in the outbox (one row per URL); :func:`deliver_due` sends what is
due, with retries and backoff. The worker delivers on every poll; the HTTP service calls
:func:`notify` when an adapter is promoted through the API. :class:`Notifier` is the seam for
other channels; :class:`WebhookNotifier` is the webhook implementation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from adaptune.notify.outbox import (
    MAX_ATTEMPTS,
    backoff_s,
    deliver_due,
    notify,
    outbox,
    safe_url,
    signature,
)
from adaptune.notify.text import FORMATS, render, summary
from adaptune.store import Store

__all__ = [
    "FORMATS",
    "MAX_ATTEMPTS",
    "Notifier",
    "WebhookNotifier",
    "backoff_s",
    "deliver_due",
    "notify",
    "outbox",
    "render",
    "safe_url",
    "signature",
    "summary",
]


class Notifier(Protocol):
    """Something that tells people about an event (``job.failed``, ``adapter.promoted``, …)."""

    def send(self, event: str, data: Mapping[str, Any]) -> int:
        """Queue or send ``event``; how many messages it made."""
        ...


@dataclass(frozen=True)
class WebhookNotifier:
    """Webhooks to ``urls`` through the store's outbox (delivered by :func:`deliver_due`)."""

    store: Store
    urls: Sequence[str]
    """Endpoints that receive every event."""
    fmt: str = "slack"
    """``slack`` (a readable ``text`` line plus the data) or ``json``."""

    def send(self, event: str, data: Mapping[str, Any]) -> int:
        """Write one outbox row per URL; the number written."""
        return notify(self.store, event, dict(data), self.urls, self.fmt)
