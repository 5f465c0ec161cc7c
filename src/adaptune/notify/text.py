"""The bodies of outgoing notifications: one readable line per event, and the JSON around it.

The Slack-compatible format is ``{"text": <line>, "event", "data", "created_at"}``: Slack (and
Mattermost, Discord's Slack endpoint, n8n) show ``text`` and ignore the rest; the ``json``
format is the same without ``text``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

FORMATS = ("slack", "json")


def _num(value: Any, other: Any = None) -> str:
    if not isinstance(value, float):
        return str(value)
    close = isinstance(other, float) and f"{value:.2f}" == f"{other:.2f}"
    return f"{value:.4f}" if close else f"{value:.2f}"


def _in_domain(data: Mapping[str, Any]) -> str:
    return f" in domain {data['domain']}" if data.get("domain") else ""


def _change(data: Mapping[str, Any]) -> str:
    """`` (next-window NLL 2.31 → 2.18)`` when the data carry a before and an after value."""
    if data.get("before") is None or data.get("after") is None:
        return ""
    metric = data.get("metric") or "next-window NLL"
    before, after = data["before"], data["after"]
    return f" ({metric} {_num(before, after)} → {_num(after, before)})"


def _promoted(data: Mapping[str, Any]) -> str:
    version = data.get("version", "?")
    return f"adapter {version} promoted to production{_in_domain(data)}{_change(data)}"


def _candidate(data: Mapping[str, Any]) -> str:
    reason = f": {data['reason']}" if data.get("reason") else ""
    return f"adapter {data.get('version', '?')} stays a candidate{_in_domain(data)}{reason}"


def _job_name(data: Mapping[str, Any]) -> str:
    return f"{data.get('kind', 'job')} job {str(data.get('id', '?'))[:8]}"


def _succeeded(data: Mapping[str, Any]) -> str:
    result = data.get("result") or {}
    made = f": {result['version']}" if isinstance(result, Mapping) and "version" in result else ""
    return f"{_job_name(data)} succeeded{_in_domain(data)}{made}"


def _failed(data: Mapping[str, Any]) -> str:
    tries = data.get("attempts")
    after = f" after {tries} attempt{'s' if tries != 1 else ''}" if tries else ""
    return f"{_job_name(data)} failed{_in_domain(data)}{after}: {data.get('error') or '?'}"


def _rollback(data: Mapping[str, Any]) -> str:
    return f"production rolled back to adapter {data.get('version', '?')}{_in_domain(data)}"


_LINES: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "adapter.rollback": _rollback,
    "adapter.promoted": _promoted,
    "adapter.candidate": _candidate,
    "job.succeeded": _succeeded,
    "job.failed": _failed,
}


def summary(event: str, data: Mapping[str, Any]) -> str:
    """One readable line for ``event``, e.g. ``adaptune: adapter hf-v4 promoted to production
    in domain hf (next-window NLL 2.31 → 2.18)``."""
    line = _LINES.get(event)
    text = line(data) if line else f"{event}{_in_domain(data)}"
    return f"adaptune: {text}"


def render(event: str, data: Mapping[str, Any], fmt: str, created_at: datetime) -> str:
    """The exact JSON body sent (and signed) for ``event`` in format ``fmt``."""
    body: dict[str, Any] = {}
    if fmt == "slack":
        body["text"] = summary(event, data)
    body |= {"event": event, "data": dict(data), "created_at": created_at.isoformat()}
    return json.dumps(body, ensure_ascii=False, default=str)
