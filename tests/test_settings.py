"""Training settings are declared once, in TrainConfig: the worker's job parameters, the compare
config and the command line's options take their names, types, defaults and help from it."""

from __future__ import annotations

import typing
from dataclasses import fields

import pytest
import typer.main

from adaptune.cli import app
from adaptune.cli.options import field_docs, help_text
from adaptune.config import TrainConfig, train_field, train_names
from adaptune.pipeline.compare import CompareConfig
from adaptune.pipeline.train_job import LoopParams

DEFAULTS = TrainConfig()
OWN_DEFAULTS = {CompareConfig: {"max_steps": 12, "max_len": 512}, LoopParams: {}}
"""The training defaults a config sets for itself (short chains for compare)."""


def defaults(config: type) -> dict[str, object]:
    return {f.name: f.default for f in fields(config)}


@pytest.mark.parametrize("config", [LoopParams, CompareConfig])
def test_configs_hold_training_settings_with_trainconfigs_types_and_defaults(config):
    names = train_names(config)
    ours, theirs = typing.get_type_hints(config), typing.get_type_hints(TrainConfig)
    assert names and {"lr", "batch_size", "max_len", "seed"} <= set(names.values())
    for name, setting in names.items():
        assert ours[name] == theirs[setting], name
        want = OWN_DEFAULTS[config].get(name, getattr(DEFAULTS, setting))
        assert defaults(config)[name] == want, name


def test_job_parameters_keep_their_keys():
    assert {f.name for f in fields(LoopParams)} == {
        *("model", "max_steps", "epochs", "batch_size", "max_len", "lr", "replay", "context"),
        *("heldout_per_window", "eval_windows", "tolerance", "promote", "checkpoint_every"),
        *("job_id", "seed", "track"),
    }
    assert train_names(LoopParams)["replay"] == "replay_share"


def test_a_train_field_names_a_trainconfig_setting():
    with pytest.raises(TypeError, match="no setting"):
        train_field("learning_rate")


def _params(command: str) -> dict[str, typer.core.click.Parameter]:
    group = typer.main.get_command(app)
    return {p.name: p for p in group.commands[command].params}  # type: ignore[attr-defined]


def test_train_options_take_trainconfigs_defaults_and_docs():
    params = _params("train")
    docs = field_docs(TrainConfig)
    for name in ("strategy", "max_steps", "epochs", "lr", "batch_size", "max_len", "seed"):
        assert params[name].default == getattr(DEFAULTS, name), name
        assert params[name].help == help_text(docs[name]), name
    assert params["replay_share"].opts == ["--replay"]
    assert params["replay_share"].default == DEFAULTS.replay_share
    assert params["forward_tokens"].default == DEFAULTS.forward_tokens


def test_compare_options_offer_compareconfigs_defaults():
    params, own = _params("compare"), defaults(CompareConfig)
    for name in ("max_steps", "batch_size", "max_len", "model"):
        assert params[name].default == own[name], name
    assert params["epochs"].default is None  # --epochs replaces --max-steps when given
