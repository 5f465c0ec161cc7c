"""``adaptune adapters …`` through its typer app: the JSON contract, aliases, delete, export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adaptune.cli.adapters import app
from adaptune.registry import RegistryError, register, set_metrics
from adaptune.store.domains import add_domain
from tiny_lora import ignore_peft_warning, make_adapter, make_base

pytestmark = ignore_peft_warning
LIST_KEYS = {
    "version",
    "parent",
    "strategy",
    "window",
    "base_model",
    "dataset",
    "created_at",
    "aliases",
    "metrics",
    "cost",
}


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    return make_adapter(make_base(root / "base"), root / "adapter")


@pytest.fixture
def lineage(store, adapter_dir):
    """Domain ``vllm`` with v1 → v2 (v1 production), and a cost and metrics on v2."""
    with store.begin() as conn:
        add_domain(conn, "vllm")
    fields = {"strategy": "adaptive", "base_model": "org/tiny", "dataset": "abc"}
    register(store, "vllm", adapter_dir, window="2024Q1", **fields)
    register(store, "vllm", adapter_dir, window="2024Q2", parent="vllm-v1", cost={"s": 3}, **fields)
    set_metrics(store, "vllm-v2", {"acc": 0.5})
    invoke("promote", "vllm-v1")
    return store


def invoke(*args: str, ok: bool = True):
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    if ok and result.exit_code != 0:
        raise AssertionError(f"exit {result.exit_code}: {result.output}\n{result.exception!r}")
    return result


def test_list_json_follows_the_contract(lineage):
    data = json.loads(invoke("list", "--json").stdout)
    assert [set(row) for row in data] == [LIST_KEYS, LIST_KEYS]
    v1, v2 = data
    assert (v1["version"], v1["parent"], v1["aliases"]) == ("vllm-v1", None, ["production"])
    assert (v2["version"], v2["parent"], v2["window"]) == ("vllm-v2", "vllm-v1", "2024Q2")
    assert (v2["metrics"], v2["cost"], v2["aliases"]) == ({"acc": 0.5}, {"s": 3}, [])
    assert v2["strategy"] == "adaptive" and v2["base_model"] == "org/tiny"
    assert v2["dataset"] == "abc" and v2["created_at"].endswith("+00:00")
    assert "vllm-v2" in invoke("list").stdout


def test_show_accepts_a_version_or_an_alias(lineage):
    shown = json.loads(invoke("show", "production", "--json").stdout)
    assert shown["version"] == "vllm-v1" and shown["aliases"] == ["production"]
    assert Path(shown["path"]).is_dir() and len(shown["weights_sha256"]) == 64
    assert "vllm-v1" in invoke("show", "vllm-v2").stdout


def test_promote_rollback_and_delete(lineage):
    invoke("promote", "vllm-v2", "--alias", "candidate")
    invoke("promote", "vllm-v2")
    data = json.loads(invoke("list", "--json").stdout)
    assert [row["aliases"] for row in data] == [[], ["production"]]
    assert "vllm-v1" in invoke("rollback", "--domain", "vllm").stdout
    refused = invoke("delete", "vllm-v1", ok=False)
    assert refused.exit_code != 0 and isinstance(refused.exception, RegistryError)
    assert "--force" in str(refused.exception)
    assert "vllm-v2" in invoke("delete", "vllm-v1", "--force").stdout
    (row,) = json.loads(invoke("list", "--json").stdout)
    assert row["version"] == "vllm-v2" and row["parent"] == "vllm-v1"


def test_export_writes_a_vllm_adapter(lineage, tmp_path):
    invoke("export", "vllm-v2", "--to", str(tmp_path / "out"), "--format", "vllm")
    config = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "org/tiny"
    assert (tmp_path / "out" / "adapter_model.safetensors").exists()
    bad = invoke("export", "vllm-v2", "--to", str(tmp_path / "x"), "--format", "onnx", ok=False)
    assert "Unknown export format" in str(bad.exception)


def test_list_shows_every_domain_unless_one_is_named(lineage, adapter_dir):
    with lineage.begin() as conn:
        add_domain(conn, "llama")
    register(lineage, "llama", adapter_dir, strategy="from-base", base_model="org/tiny")
    every = json.loads(invoke("list", "--json").stdout)
    assert [row["version"] for row in every] == ["llama-v1", "vllm-v1", "vllm-v2"]  # by domain
    table = invoke("list").stdout
    assert "domain" in table and "llama-v1" in table and "vllm-v2" in table
    only = json.loads(invoke("list", "--domain", "llama", "--json").stdout)
    assert [row["version"] for row in only] == ["llama-v1"]
    assert "domain" not in invoke("list", "--domain", "vllm").stdout
    assert invoke("list", "--domain", "nope", ok=False).exit_code != 0
