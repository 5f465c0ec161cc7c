"""The promotion gate: does a candidate adapter replace production? A pure function.

Metrics are answer NLL per window's held-out set (lower is better). The candidate passes when
it is better than production on the newest window (the data production has not learnt yet)
and no older window gets worse by more than ``tolerance``, a share of production's NLL there
(0.02: up to 2 % worse is forgiven). With no production yet, the candidate must beat the base
model on the newest window. A missing or non-finite value never passes by accident: a
candidate without a usable newest-window number fails, and a candidate whose older-window
number is not finite where production's is counts as a regression.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from adaptune.errors import RegistryError


@dataclass(frozen=True, slots=True)
class GateDecision:
    """What the gate decided and why."""

    passed: bool
    """True when the candidate should become ``production``."""
    reason: str
    """One sentence a person can check against the numbers."""
    against: str
    """``production``, ``base`` or ``nothing`` (no reference metrics were given)."""
    newest: str
    """The window whose improvement is required."""
    tolerance: float
    """Allowed relative regression on an older window."""
    change: float | None = None
    """Relative NLL change on the newest window, (candidate − reference) / reference."""
    regressions: dict[str, float | None] = field(default_factory=dict)
    """Older windows that regressed beyond the tolerance → their relative change (``None``:
    the candidate's NLL there is not a number while production's is)."""
    skipped: tuple[str, ...] = ()
    """Older windows not compared (a value missing on one side or not finite on both)."""

    def to_dict(self) -> dict[str, Any]:
        """The decision as plain JSON values."""
        data = asdict(self)
        data["skipped"] = list(self.skipped)
        return data


def _value(metrics: Mapping[str, float] | None, window: str) -> float | None:
    """A finite float, or ``None`` for a missing, ``None``, NaN or infinite value."""
    if metrics is None or metrics.get(window) is None:
        return None
    value = float(metrics[window])
    return value if math.isfinite(value) else None


def _relative(candidate: float, reference: float) -> float:
    return (candidate - reference) / max(abs(reference), 1e-12)


def gate(
    candidate: Mapping[str, float],
    production: Mapping[str, float] | None,
    newest: str,
    tolerance: float,
    base: Mapping[str, float] | None = None,
) -> GateDecision:
    """Decide whether ``candidate`` replaces ``production`` (per-window NLL, lower is better).

    ``production`` is ``None`` when the domain has none; the candidate is then compared with
    ``base`` (the bare base model) on ``newest`` only.
    """
    if not math.isfinite(tolerance):
        raise RegistryError(f"Gate tolerance must be a finite number, not {tolerance!r}.")
    against, reference = ("production", production) if production is not None else ("base", base)
    if reference is None:
        return GateDecision(
            False,
            "no production adapter and no base-model metrics to compare with; "
            "measure the base model on the held-out sets first",
            "nothing",
            newest,
            tolerance,
        )
    mine = _value(candidate, newest)
    if mine is None:
        why = f"the candidate has no usable NLL on the newest window {newest}"
        return GateDecision(False, f"{why} (no held-out examples?)", against, newest, tolerance)
    theirs = _value(reference, newest)
    change = _relative(mine, theirs) if theirs is not None else None
    if theirs is not None and mine >= theirs:
        return GateDecision(
            False,
            f"no improvement on the newest window {newest}: NLL {mine:.4f} vs {against} "
            f"{theirs:.4f} ({change:+.1%})",
            against,
            newest,
            tolerance,
            change,
        )
    gain = (
        f"NLL {mine:.4f} vs {against} {theirs:.4f} ({change:+.1%})"
        if theirs is not None
        else f"NLL {mine:.4f}; {against} has no usable NLL there"
    )
    if against == "base":
        reason = f"beats the base model on the newest window {newest}: {gain}"
        return GateDecision(True, reason, against, newest, tolerance, change)
    return _older(candidate, reference, newest, tolerance, change, gain)


def _older(
    candidate: Mapping[str, float],
    production: Mapping[str, float],
    newest: str,
    tolerance: float,
    change: float | None,
    gain: str,
) -> GateDecision:
    """The newest window improved; now no older window may regress beyond ``tolerance``."""
    regressions: dict[str, float | None] = {}
    skipped: list[str] = []
    for window in sorted((set(candidate) | set(production)) - {newest}):
        mine, theirs = _value(candidate, window), _value(production, window)
        if theirs is None or (mine is None and window not in candidate):
            skipped.append(window)
        elif mine is None:
            regressions[window] = None  # broken where production works
        elif (rel := _relative(mine, theirs)) > tolerance:
            regressions[window] = rel
    if regressions:
        named = ", ".join(f"{w} ({_pct(regressions[w])})" for w in sorted(regressions))
        reason = (
            f"improves the newest window {newest} ({gain}) but older windows regress beyond "
            f"the {tolerance:.1%} tolerance: {named}"
        )
        return GateDecision(
            False, reason, "production", newest, tolerance, change, regressions, tuple(skipped)
        )
    reason = (
        f"improves the newest window {newest} ({gain}) and no older window regresses beyond "
        f"{tolerance:.1%}"
    )
    return GateDecision(True, reason, "production", newest, tolerance, change, {}, tuple(skipped))


def _pct(value: float | None) -> str:
    return "NLL not a number" if value is None else f"{value:+.1%}"


__all__ = ["GateDecision", "gate"]
