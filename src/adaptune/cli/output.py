"""Shared console helpers for the CLI: JSON to stdout, messages and progress to stderr."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def print_json(data: Any) -> None:
    """Machine-readable output: plain JSON on stdout, nothing else."""
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))  # noqa: T201


def note(message: str) -> None:
    """A progress or status line on stderr (so that stdout stays parseable)."""
    err.print(f"[dim]{escape(message)}[/]", soft_wrap=True)


@contextmanager
def progress(start: str = "starting…") -> Iterator[Callable[[str], None]]:
    """A status line fed with progress messages; waits and retries also stay on screen."""
    with err.status(start) as status:

        def show(message: str) -> None:
            status.update(message)
            if "waiting" in message or "retry" in message:
                note(message)

        yield show
