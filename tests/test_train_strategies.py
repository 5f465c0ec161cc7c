"""Example selection per strategy: replay share and diversity, cumulative, from-base."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from adaptune.errors import ConfigError
from adaptune.train.strategies import diverse_sample, diversity_key, select, window_order
from tiny_model import example


def windows() -> list:
    """w001: 40 examples (30 of one signature), w002: 20, w003: 8, plus held-out and triage."""
    old = [example(i, "w001", topic=0) for i in range(30)]
    old += [example(100 + i, "w001", topic=1 + i % 3, labels=(f"l{i % 2}",)) for i in range(10)]
    mid = [example(200 + i, "w002") for i in range(20)]
    new = [example(300 + i, "w003") for i in range(8)]
    extra = [example(400, "w003", split="heldout"), replace(example(401, "w003"), task="triage")]
    return old + mid + new + extra


def test_windows_are_ordered_by_time_not_by_input_order() -> None:
    assert window_order(list(reversed(windows()))) == ["w001", "w002", "w003"]


def test_from_base_trains_this_window_only() -> None:
    chosen = select(windows(), "from-base", "w003")
    assert {e.window for e in chosen.examples} == {"w003"}
    assert len(chosen.examples) == 8 and not chosen.from_parent and chosen.replayed == 0


def test_latest_window_is_the_default_and_held_out_never_trains() -> None:
    chosen = select(windows(), "from-base")
    assert chosen.window == "w003"
    assert all(e.split == "train" and e.task == "qa" for e in chosen.examples)


def test_cumulative_trains_every_window_so_far() -> None:
    chosen = select(windows(), "cumulative", "w002")
    assert Counter(e.window for e in chosen.examples) == {"w001": 40, "w002": 20}
    assert not chosen.from_parent


def test_adaptive_replays_a_share_of_earlier_windows_and_continues() -> None:
    chosen = select(windows(), "adaptive", "w002", replay_share=0.25)
    assert chosen.from_parent
    assert chosen.replayed == 5  # 25 % of this window's 20
    assert Counter(e.window for e in chosen.examples) == {"w002": 20, "w001": 5}
    default = select(windows(), "adaptive", "w003")
    assert default.replayed == 2 and {e.window for e in default.examples[8:]} <= {"w001", "w002"}


def test_replay_is_diverse_across_signatures_and_labels() -> None:
    pool = [e for e in windows() if e.window == "w001"]
    sample = diverse_sample(pool, 5, seed=0)
    keys = [diversity_key(e) for e in sample]
    assert len(set(keys)) == 5  # 30 of the 40 share one signature, yet it takes one slot
    many = diverse_sample(pool, 12, seed=0)
    assert Counter(diversity_key(e) for e in many).most_common(1)[0][1] <= 3


def test_replay_is_deterministic_by_seed() -> None:
    pool = [e for e in windows() if e.window != "w003"]
    ids = [e.id for e in diverse_sample(pool, 10, seed=3)]
    assert ids == [e.id for e in diverse_sample(list(reversed(pool)), 10, seed=3)]
    assert ids != [e.id for e in diverse_sample(pool, 10, seed=4)]
    assert len(diverse_sample(pool, 1000)) == len(pool)


def test_diversity_key_falls_back_to_labels() -> None:
    assert diversity_key(example(3)) == "labels:bug"  # topic 3 has no signature
    assert diversity_key(example(0)).startswith("signature:ValueError")


def test_unknown_window_or_strategy_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="w009"):
        select(windows(), "adaptive", "w009")
    with pytest.raises(ConfigError, match="strategy"):
        select(windows(), "sometimes", "w001")
    with pytest.raises(ConfigError, match="build the dataset"):
        select([example(1, split="heldout")], "adaptive")
