"""Chronological windows and the deterministic train / held-out split.

Examples are ordered by when their answer became known (a fix's merge, an issue's close) and
grouped by quarter, month or a fixed count. Within a window, an example is held out when a hash
of its issue id falls below the held-out share, so the split never changes between builds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from adaptune.dataset.artifacts import DatasetError
from adaptune.errors import ConfigError
from adaptune.types import Example


@dataclass(frozen=True, slots=True)
class Window:
    """One window of a build: its name and the time span it covers."""

    name: str
    start: datetime
    end: datetime


def parse_window_spec(spec: str) -> str | int:
    """``quarter`` / ``month`` or a positive example count per window."""
    if spec in ("quarter", "month"):
        return spec
    try:
        count = int(spec)
    except ValueError:
        raise ConfigError(f"--window must be quarter, month or a count, not {spec!r}.") from None
    if count <= 0:
        raise ConfigError("--window N needs N > 0.")
    return count


def window_name(when: datetime, spec: str) -> str:
    """The calendar window of ``when``: ``2021Q3`` or ``2021-07``."""
    if spec == "quarter":
        return f"{when.year}Q{(when.month - 1) // 3 + 1}"
    return f"{when.year}-{when.month:02d}"


def is_heldout(key: str, share: float) -> bool:
    """Deterministic split: the first 8 hex digits of sha1(key) against ``share``."""
    digest = int(hashlib.sha1(key.encode()).hexdigest()[:8], 16)
    return digest / 0xFFFFFFFF < share


def assign_windows(
    examples: Sequence[Example], spec: str | int, heldout: float
) -> tuple[list[Example], list[Window]]:
    """Give every example its window and split; windows come back in time order."""
    if not 0.0 <= heldout < 1.0:
        raise ConfigError("--heldout must be in [0, 1).")
    ordered = sorted(examples, key=lambda e: (e.known_at, e.id))
    out: list[Example] = []
    for index, ex in enumerate(ordered):
        name = (
            f"w{index // spec + 1:03d}" if isinstance(spec, int) else window_name(ex.known_at, spec)
        )
        split = "heldout" if is_heldout(ex.issue, heldout) else "train"
        out.append(replace(ex, window=name, split=split))
    spans: dict[str, Window] = {}
    for ex in out:
        w = spans.get(ex.window)
        if w is None:
            spans[ex.window] = Window(ex.window, ex.known_at, ex.known_at)
        else:
            spans[ex.window] = Window(w.name, min(w.start, ex.known_at), max(w.end, ex.known_at))
    return out, sorted(spans.values(), key=lambda w: (w.start, w.name))


def resolve_window(windows: Sequence[str], window: str | None) -> str:
    """A window by name or 1-based position; ``None`` is the latest."""
    if not windows:
        raise DatasetError("The dataset build has no qa windows: nothing to train on.")
    if window is None:
        return windows[-1]
    if window.isdigit():
        index = int(window)
        if not 1 <= index <= len(windows):
            raise ConfigError(f"--window {window}: the build has windows 1..{len(windows)}.")
        return windows[index - 1]
    if window not in windows:
        raise ConfigError(f"--window {window!r} is not in the build ({', '.join(windows)}).")
    return window
