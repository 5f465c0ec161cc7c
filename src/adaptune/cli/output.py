"""Shared console helpers for the CLI: JSON to stdout, messages and progress to stderr."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def print_json(data: Any) -> None:
    """Machine-readable output: plain JSON on stdout, nothing else."""
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))  # noqa: T201


def note(message: str) -> None:
    """A progress or status line on stderr (so that stdout stays parseable)."""
    err.print(f"[dim]{message}[/]", soft_wrap=True)
