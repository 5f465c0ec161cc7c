"""Which examples a run trains on, per strategy, and whether it continues a parent adapter.

- ``adaptive``: this window's training examples plus a replay buffer from earlier windows
  (``replay_share`` × this window's count), continuing from the previous adapter. Replay is
  chosen for diversity: round-robin over groups of the same error signature (or, without one,
  the same labels), so one frequent failure cannot fill the buffer.
- ``from-base``: this window only, from the base model.
- ``cumulative``: every window up to this one, from the base model.

Only ``qa`` examples outside the held-out split are ever selected.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from adaptune.config import TrainConfig
from adaptune.errors import ConfigError
from adaptune.types import Example

TASKS = ("qa",)
"""Tasks the trainer learns today."""


@dataclass(frozen=True, slots=True)
class Selection:
    """The examples of a run and where it starts."""

    examples: tuple[Example, ...]
    """This window's examples first, then any from earlier windows."""
    from_parent: bool
    """Whether the run continues the parent adapter (``adaptive``)."""
    window: str
    """The window trained on."""
    replayed: int
    """How many examples came from earlier windows."""


def select(
    examples: Sequence[Example],
    strategy: str,
    window: str | None = None,
    replay_share: float = TrainConfig().replay_share,
    seed: int = 0,
) -> Selection:
    """The training examples of ``window`` (default: the latest) under ``strategy``."""
    pool = [e for e in examples if e.task in TASKS and e.split != "heldout"]
    order = window_order(pool)
    if not order:
        raise ConfigError("No qa training examples to train on; build the dataset first.")
    window = window if window is not None else order[-1]
    if window not in order:
        raise ConfigError(f"Window {window!r} has no qa training examples; windows: {order}.")
    earlier = set(order[: order.index(window)])
    current = [e for e in pool if e.window == window]
    before = [e for e in pool if e.window in earlier]
    if strategy == "from-base":
        return Selection(tuple(current), False, window, 0)
    if strategy == "cumulative":
        return Selection(tuple(current + before), False, window, len(before))
    if strategy == "adaptive":
        replay = diverse_sample(before, round(replay_share * len(current)), seed)
        return Selection(tuple(current + replay), True, window, len(replay))
    raise ConfigError(f"Unknown strategy {strategy!r}; use adaptive, from-base or cumulative.")


def window_order(examples: Sequence[Example]) -> list[str]:
    """Window names in time order (by their earliest example, then name)."""
    first: dict[str, tuple] = {}
    for ex in examples:
        key = (ex.known_at, ex.window)
        if ex.window not in first or key < first[ex.window]:
            first[ex.window] = key
    return sorted(first, key=lambda name: first[name])


def diversity_key(example: Example) -> str:
    """The group an example competes in for a replay slot: its signature, else its labels."""
    if example.signature:
        return f"signature:{example.signature}"
    labels = sorted(str(label) for label in example.meta.get("labels") or [])
    return "labels:" + ",".join(labels)


def diverse_sample(pool: Sequence[Example], count: int, seed: int = 0) -> list[Example]:
    """``count`` examples, round-robin over :func:`diversity_key` groups, in a seeded order."""
    rng = random.Random(seed)
    groups: dict[str, list[Example]] = defaultdict(list)
    for ex in sorted(pool, key=lambda e: e.id):
        groups[diversity_key(ex)].append(ex)
    keys = sorted(groups)
    rng.shuffle(keys)
    for key in keys:
        rng.shuffle(groups[key])
    chosen: list[Example] = []
    depth = 0
    while len(chosen) < min(count, len(pool)):
        for key in keys:
            if depth < len(groups[key]) and len(chosen) < count:
                chosen.append(groups[key][depth])
        depth += 1
    return chosen
