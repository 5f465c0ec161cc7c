"""Triage labels: each project's own type labels, mapped to a small set of types per domain.

Labels such as ``stale``, ``duplicate``, severities or ``good first issue`` say nothing about an
issue's type and are never triage targets. A domain may replace its table with
``ADAPTUNE_HOME/domains/<name>/labels.json`` (``{"project label": "type", ...}``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from adaptune.errors import ConfigError

# project label (lower-case) → triage type
TABLES: dict[str, dict[str, str]] = {
    "vllm-project/vllm": {
        "bug": "bug",
        "usage": "usage",
        "feature request": "feature",
        "new-model": "feature",
        "rfc": "feature",
        "installation": "installation",
        "performance": "performance",
        "documentation": "documentation",
        "misc": "misc",
    },
    "ggml-org/llama.cpp": {
        "bug": "bug",
        "bug-unconfirmed": "bug",
        "enhancement": "feature",
        "question": "usage",
        "documentation": "documentation",
        "performance": "performance",
        "build": "installation",
    },
    "huggingface/datasets": {
        "bug": "bug",
        "enhancement": "feature",
        "dataset request": "dataset request",
        "new dataset": "dataset request",
        "documentation": "documentation",
        "question": "usage",
    },
}
TABLES["ggerganov/llama.cpp"] = TABLES["ggml-org/llama.cpp"]

DEFAULT_TABLE: dict[str, str] = {
    "bug": "bug",
    "type: bug": "bug",
    "enhancement": "feature",
    "feature": "feature",
    "feature request": "feature",
    "question": "usage",
    "usage": "usage",
    "documentation": "documentation",
    "docs": "documentation",
    "performance": "performance",
    "installation": "installation",
}
"""Used for repos without a table of their own (and for Jira issue types)."""


def table_for(repos: Iterable[str], override: Path | None = None) -> dict[str, str]:
    """The label table of a domain made of ``repos`` (an override file wins)."""
    if override is not None and override.exists():
        try:
            data = json.loads(override.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{override}: not a JSON label table ({exc}).") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise ConfigError(
                f'{override}: not a label table; expected {{"project label": "type", ...}}.'
            )
        return {k.lower(): v for k, v in data.items()}
    table: dict[str, str] = {}
    for repo in repos:
        table.update(TABLES.get(repo, DEFAULT_TABLE))
    return table or dict(DEFAULT_TABLE)


def triage_type(
    labels: Iterable[str], table: dict[str, str], issue_type: str | None = None
) -> str | None:
    """The one type an issue's labels map to, or ``None`` when none or several disagree."""
    found = {table[lab.lower()] for lab in labels if lab.lower() in table}
    if not found and issue_type:
        found = {table.get(issue_type.lower(), "")} - {""}
    return found.pop() if len(found) == 1 else None
