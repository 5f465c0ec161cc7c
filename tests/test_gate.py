"""The promotion gate on hand-made per-window NLL (lower is better)."""

from __future__ import annotations

import json
import math

import pytest

from adaptune.registry import RegistryError, gate

NAN = float("nan")
PROD = {"w1": 2.0, "w2": 2.5, "w3": 3.0}


@pytest.mark.parametrize(
    ("candidate", "passed", "words"),
    [
        ({"w1": 1.9, "w2": 2.4, "w3": 2.8}, True, "improves the newest window w3"),
        ({"w1": 2.03, "w2": 2.5, "w3": 2.9}, True, "no older window regresses"),  # +1.5 % ok
        ({"w1": 2.2, "w2": 2.4, "w3": 2.8}, False, "w1 (+10.0%)"),
        ({"w1": 2.0, "w2": 2.5, "w3": 3.0}, False, "no improvement on the newest window w3"),
        ({"w1": 1.0, "w2": 1.0, "w3": 3.1}, False, "no improvement"),
        ({"w1": 2.0, "w2": NAN, "w3": 2.8}, False, "w2 (NLL not a number)"),
        ({"w1": 1.0, "w2": 1.0, "w3": NAN}, False, "no usable NLL on the newest window w3"),
        ({"w1": 1.0, "w2": 1.0}, False, "no usable NLL on the newest window w3"),
    ],
)
def test_gate_against_production(candidate: dict, passed: bool, words: str) -> None:
    decision = gate(candidate, PROD, "w3", 0.02)
    assert decision.passed is passed
    assert words in decision.reason
    assert decision.against == "production"
    json.dumps(decision.to_dict(), allow_nan=False)  # storable as it is


def test_regressions_name_every_window_beyond_tolerance() -> None:
    decision = gate({"w1": 2.2, "w2": 2.6, "w3": 2.0}, PROD, "w3", 0.02)
    assert not decision.passed
    assert set(decision.regressions) == {"w1", "w2"}
    assert decision.regressions["w1"] == pytest.approx(0.1)
    assert "w1" in decision.reason and "w2" in decision.reason
    assert decision.change == pytest.approx(-1 / 3)


def test_tolerance_moves_the_line() -> None:
    candidate = {"w1": 2.1, "w2": 2.5, "w3": 2.9}  # w1 is 5 % worse
    assert not gate(candidate, PROD, "w3", 0.02).passed
    assert gate(candidate, PROD, "w3", 0.06).passed
    # A negative tolerance demands that older windows improve too.
    assert not gate({"w1": 1.99, "w2": 2.49, "w3": 2.9}, PROD, "w3", -0.05).passed
    with pytest.raises(RegistryError, match="finite"):
        gate(candidate, PROD, "w3", NAN)


def test_missing_or_broken_older_windows_are_skipped_not_failed() -> None:
    production = {"w1": NAN, "w2": 2.5, "w3": 3.0, "w0": 1.0}
    decision = gate({"w1": 5.0, "w2": 2.5, "w3": 2.9, "w9": 9.0}, production, "w3", 0.02)
    assert decision.passed, decision.reason
    assert set(decision.skipped) == {"w0", "w1", "w9"}


def test_production_without_a_newest_number_loses_to_a_working_candidate() -> None:
    decision = gate({"w2": 2.5, "w3": 2.9}, {"w2": 2.5, "w3": NAN}, "w3", 0.02)
    assert decision.passed and decision.change is None
    assert "production has no usable NLL" in decision.reason


def test_first_adapter_is_judged_against_the_base_model_on_the_newest_window() -> None:
    base = {"w1": 3.0, "w2": 3.0}
    win = gate({"w1": 9.0, "w2": 2.9}, None, "w2", 0.02, base=base)
    assert win.passed and win.against == "base"  # older windows do not count against base
    assert "beats the base model" in win.reason
    lose = gate({"w1": 1.0, "w2": 3.0}, None, "w2", 0.02, base=base)
    assert not lose.passed and "vs base 3.0000" in lose.reason
    nothing = gate({"w2": 1.0}, None, "w2", 0.02)
    assert not nothing.passed and nothing.against == "nothing"


def test_infinite_values_count_as_missing() -> None:
    decision = gate({"w3": math.inf}, PROD, "w3", 0.02)
    assert not decision.passed and "no usable NLL" in decision.reason
