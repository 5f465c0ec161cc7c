"""The adapter registry on a real tiny PEFT adapter: lineage, aliases, deletes, metrics, export."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import event, inspect, select

from adaptune import __version__
from adaptune.errors import DomainError
from adaptune.registry import (
    RegistryError,
    delete,
    export,
    get,
    list_versions,
    promote,
    register,
    resolve,
    rollback,
    set_metrics,
)
from adaptune.registry.files import sha256_file
from adaptune.store import schema
from adaptune.store.db import _alembic_config, create_db_engine, current_revision, migrate
from adaptune.store.domains import add_domain
from tiny_lora import ignore_peft_warning, load_base, logits, make_adapter, make_base

pytestmark = ignore_peft_warning
REGISTRY_TABLES = ("adapters", "adapter_sequences", "adapter_aliases", "alias_history")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(base model folder, trained adapter folder), built once for the module."""
    root = tmp_path_factory.mktemp("tiny")
    base = make_base(root / "base")
    return base, make_adapter(base, root / "adapter")


@pytest.fixture
def reg(store, tiny):
    """``reg(domain, **fields)``: register the tiny adapter with sensible provenance."""
    with store.begin() as conn:
        add_domain(conn, "alpha")
        add_domain(conn, "beta")

    def _register(domain: str = "alpha", **fields):
        fields = {"strategy": "adaptive", "window": "2024Q1", "dataset": "d" * 16, **fields}
        return register(store, domain, tiny[1], base_model_hash="basehash", **fields)

    return _register


def _rows(store, table) -> list[dict]:
    with store.begin() as conn:
        return [dict(r) for r in conn.execute(select(table)).mappings()]


def test_migration_0002_creates_and_drops_the_registry_tables(tmp_path):
    engine = create_db_engine(f"sqlite:///{tmp_path / 'r.db'}")
    migrate(engine)
    insp = inspect(engine)
    for name in REGISTRY_TABLES:
        table = schema.metadata.tables[name]
        assert {c["name"] for c in insp.get_columns(name)} == {c.name for c in table.columns}
    uniques = insp.get_unique_constraints("adapter_aliases")
    assert [u["column_names"] for u in uniques] == [["domain", "alias"]]
    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
    assert current_revision(engine) == "0001"
    assert not set(REGISTRY_TABLES) & set(inspect(engine).get_table_names())
    migrate(engine)
    assert set(REGISTRY_TABLES) <= set(inspect(engine).get_table_names())


def test_register_copies_the_adapter_and_writes_its_manifest(store, tiny, reg):
    rec = reg(config={"r": 4}, cost={"seconds": 1.5}, metrics={"nll": 2.0})
    assert rec.version == "alpha-v1" and rec.path == store.settings.home / "adapters/alpha-v1"
    names = sorted(p.name for p in rec.path.iterdir())
    assert names == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "manifest.json",
    ]
    manifest = json.loads((rec.path / "manifest.json").read_text())
    assert manifest == rec.manifest()
    assert manifest["base_model"] == str(tiny[0])  # taken from adapter_config.json
    assert manifest["weights_sha256"] == sha256_file(tiny[1] / "adapter_model.safetensors")
    assert manifest["package_version"] == __version__
    assert (manifest["config"], manifest["cost"]) == ({"r": 4}, {"seconds": 1.5})
    assert get(store, "alpha-v1") == rec
    assert [v.version for v in list_versions(store)] == ["alpha-v1"]
    (row,) = _rows(store, schema.adapters)
    assert row["path"] == "adapters/alpha-v1" and json.loads(row["metrics"]) == {"nll": 2.0}
    assert tiny[1].exists()  # copied, not moved


def test_move_removes_the_source_after_registering(store, tiny, reg, tmp_path):
    source = tmp_path / "trained"
    shutil.copytree(tiny[1], source)
    rec = register(store, "alpha", source, strategy="from-base", move=True)
    assert not source.exists() and (rec.path / "adapter_model.safetensors").exists()
    assert not (rec.path / "checkpoints").exists()


def test_versions_count_per_domain_and_are_never_reused(store, reg):
    assert [reg().version, reg().version, reg("beta").version] == [
        "alpha-v1",
        "alpha-v2",
        "beta-v1",
    ]
    delete(store, "alpha-v2")
    assert reg().version == "alpha-v3"
    assert [v.version for v in list_versions(store, "alpha")] == ["alpha-v1", "alpha-v3"]
    with pytest.raises(DomainError, match="No domain 'gamma'"):
        reg("gamma")


def test_lineage_within_and_across_domains(store, reg):
    v1 = reg()
    v2 = reg(parent="alpha-v1")
    promote(store, v2.version)
    b1 = reg("beta", parent="alpha:production", strategy="from-base")
    b2 = reg("beta", parent="beta:beta-v1")
    assert (v2.parent, v2.parent_domain) == ("alpha-v1", "alpha")
    assert (b1.parent, b1.parent_domain) == ("alpha-v2", "alpha")
    assert (b2.parent, b2.parent_domain) == ("beta-v1", "beta")
    assert json.loads((b1.path / "manifest.json").read_text())["parent_domain"] == "alpha"
    with pytest.raises(RegistryError, match="belongs to domain 'alpha'"):
        reg("beta", parent="beta:alpha-v1")
    with pytest.raises(RegistryError, match="No adapter version 'alpha-v9'"):
        reg(parent="alpha-v9")
    with pytest.raises(RegistryError, match="another base model"):
        register(store, "alpha", v1.path, strategy="adaptive", parent="alpha-v1",
                 base_model_hash="otherhash")  # fmt: skip
    assert len(list_versions(store)) == 4  # the refused ones left nothing behind


def test_promote_and_rollback_several_steps(store, reg):
    v1, v2, v3 = reg(), reg(), reg()
    with pytest.raises(RegistryError, match="no production adapter to roll back"):
        rollback(store, "alpha")
    promote(store, v1.version)
    promote(store, v2.version, alias="candidate")
    assert get(store, v2.version).aliases == ("candidate",)
    promote(store, v2.version)  # production now; the candidate alias on it is cleared
    assert get(store, v2.version).aliases == ("production",)
    promote(store, v3.version)
    assert resolve(store, "alpha", "production").version == v3.version
    assert rollback(store, "alpha").version == v2.version
    assert rollback(store, "alpha").version == v1.version
    with pytest.raises(RegistryError, match="no earlier production adapter"):
        rollback(store, "alpha")
    (alias,) = _rows(store, schema.adapter_aliases)
    assert (alias["version"], alias["previous_version"]) == (v1.version, v2.version)
    history = [(h["alias"], h["version"], h["reason"]) for h in _rows(store, schema.alias_history)]
    assert history == [
        ("production", "alpha-v1", "promote"),
        ("candidate", "alpha-v2", "promote"),
        ("production", "alpha-v2", "promote"),
        ("candidate", None, "cleared-by-promotion"),
        ("production", "alpha-v3", "promote"),
        ("production", "alpha-v2", "rollback"),
        ("production", "alpha-v1", "rollback"),
    ]
    with pytest.raises(RegistryError, match="Unknown alias"):
        promote(store, v1.version, alias="staging")


def test_rollback_skips_a_force_deleted_production(store, reg):
    v1, v2, v3 = reg(), reg(), reg()
    for v in (v1, v2, v3):
        promote(store, v.version)
    delete(store, v2.version)
    assert rollback(store, "alpha").version == v1.version


def test_delete_refuses_parents_and_aliased_versions_unless_forced(store, reg):
    v1 = reg()
    v2 = reg(parent=v1.version)
    b1 = reg("beta", parent=f"alpha:{v1.version}")
    promote(store, v1.version)
    with pytest.raises(RegistryError, match=r"it is production; alpha-v2, beta-v1 were trained"):
        delete(store, v1.version)
    assert v1.path.exists()
    done = delete(store, v1.version, force=True)
    assert (done.cleared_aliases, done.orphans) == (("production",), ("alpha-v2", "beta-v1"))
    assert not v1.path.exists() and not list(v1.path.parent.glob(".deleting-*"))
    for child in (v2, b1):
        rec = get(store, child.version)
        assert rec.parent == v1.version and rec.parent_deleted_at is not None
        manifest = json.loads((rec.path / "manifest.json").read_text())
        assert manifest["parent_deleted_at"] == rec.parent_deleted_at.isoformat()
    with pytest.raises(RegistryError, match="No adapter version"):
        get(store, v1.version)
    assert delete(store, v2.version).orphans == ()  # no alias, no child: no force needed


def test_set_metrics_merges_into_the_row_and_the_manifest(store, reg):
    v = reg(metrics={"nll": 2.5, "windows": {"2024Q1": {"nll": 2.5}}})
    set_metrics(store, v.version, {"acc": 0.4, "windows": {"2024Q2": {"nll": 2.9}}})
    rec = set_metrics(store, v.version, {"nll": 2.1})
    want = {"nll": 2.1, "acc": 0.4, "windows": {"2024Q1": {"nll": 2.5}, "2024Q2": {"nll": 2.9}}}
    assert rec.metrics == want == get(store, v.version).metrics
    assert json.loads((v.path / "manifest.json").read_text())["metrics"] == want
    with pytest.raises(RegistryError, match="cannot be stored as JSON"):
        set_metrics(store, v.version, {"nll": float("nan")})
    assert get(store, v.version).metrics == want


def test_export_peft_and_vllm_load_with_peft(store, tiny, reg, tmp_path):
    from peft import PeftModel

    v = reg(base_model="org/tiny-llama")
    base_logits = logits(load_base(str(tiny[0]))[0])
    for fmt in ("peft", "vllm"):
        out = export(store, v.version, tmp_path / fmt, format=fmt)
        config = json.loads((out / "adapter_config.json").read_text())
        want = "org/tiny-llama" if fmt == "vllm" else str(tiny[0])
        assert config["base_model_name_or_path"] == want
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["version"] == v.version and manifest["export"]["format"] == fmt
        model = PeftModel.from_pretrained(load_base(str(tiny[0]))[0], str(out))
        assert not logits(model).allclose(base_logits)  # the LoRA is really applied
    with pytest.raises(RegistryError, match="not empty"):
        export(store, v.version, tmp_path / "peft")
    with pytest.raises(RegistryError, match="Unknown export format"):
        export(store, v.version, tmp_path / "x", format="onnx")  # type: ignore[arg-type]


def test_merged_export_gives_the_same_logits_as_the_adapter(store, tiny, reg, tmp_path):
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    v = reg()
    out = export(store, v.version, tmp_path / "merged", merged=True, load_base=load_base)
    assert (out / "model.safetensors").exists() and not (out / "adapter_config.json").exists()
    merged = LlamaForCausalLM.from_pretrained(out)
    adapted = PeftModel.from_pretrained(load_base(str(tiny[0]))[0], str(v.path))
    assert (logits(merged) - logits(adapted)).abs().max().item() < 1e-5
    assert json.loads((out / "manifest.json").read_text())["export"]["format"] == "merged"


def _leftovers(store) -> list[str]:
    root = store.settings.home / "adapters"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_an_incomplete_source_registers_nothing(store, tiny, reg, tmp_path):
    reg()  # so the domain exists and the folder too
    broken = tmp_path / "broken"
    shutil.copytree(tiny[1], broken)
    (broken / "adapter_model.safetensors").unlink()
    with pytest.raises(
        RegistryError, match=re.escape(f"{broken}/adapter_model.safetensors is missing")
    ):
        register(store, "alpha", broken, strategy="adaptive")
    data = (tiny[1] / "adapter_model.safetensors").read_bytes()
    (broken / "adapter_model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(RegistryError, match="truncated"):
        register(store, "alpha", broken, strategy="adaptive")
    (broken / "adapter_config.json").write_text("{not json")
    with pytest.raises(RegistryError, match=r"adapter_config\.json is corrupt"):
        register(store, "alpha", broken, strategy="adaptive")
    assert [v.version for v in list_versions(store)] == ["alpha-v1"]
    assert _leftovers(store) == ["alpha-v1"]


def test_a_failed_commit_removes_the_folder(store, reg):
    reg()

    def fail(_conn):
        raise RuntimeError("database went away")

    event.listen(store.engine, "commit", fail)
    try:
        with pytest.raises(RuntimeError, match="went away"):
            reg()
    finally:
        event.remove(store.engine, "commit", fail)
    assert [v.version for v in list_versions(store)] == ["alpha-v1"]
    assert _leftovers(store) == ["alpha-v1"]
    assert reg().version == "alpha-v2"  # the rolled-back number is handed out again


def test_a_failed_rename_inserts_nothing(store, reg, monkeypatch):
    reg()

    def no_space(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(RegistryError, match=r"No space left .* nothing was registered"):
        reg()
    monkeypatch.undo()
    assert [v.version for v in list_versions(store)] == ["alpha-v1"]
    assert _leftovers(store) == ["alpha-v1"]


def test_corrupt_manifest_and_missing_files_are_clear_errors(store, reg):
    v = reg()
    manifest = v.path / "manifest.json"
    manifest.write_text('{"version": "alpha-v1", ')
    with pytest.raises(RegistryError, match=re.escape(f"{manifest} is corrupt")):
        get(store, v.version)
    with pytest.raises(RegistryError, match=re.escape(f"{manifest} is corrupt")):
        set_metrics(store, v.version, {"nll": 1.0})
    with pytest.raises(RegistryError, match=re.escape(f"{manifest} is corrupt")):
        promote(store, v.version)
    manifest.write_text(json.dumps(v.manifest()))
    (v.path / "adapter_config.json").unlink()
    with pytest.raises(RegistryError, match=re.escape(f"{v.path}/adapter_config.json is missing")):
        resolve(store, None, v.version)
    delete(store, v.version)  # a broken version can still be deleted
    assert _leftovers(store) == []


def test_resolve_names_aliases_and_versions(store, reg):
    v1, b1 = reg(), reg("beta")
    with pytest.raises(RegistryError, match="has no candidate adapter"):
        resolve(store, "alpha", "candidate")
    promote(store, v1.version, alias="candidate")
    assert resolve(store, None, "alpha:candidate").version == v1.version
    assert resolve(store, None, b1.version).version == b1.version
    with pytest.raises(RegistryError, match="belongs to domain 'beta'"):
        resolve(store, "alpha", b1.version)


@pytest.mark.e2e
def test_the_registry_on_postgres(tiny, workspace):
    import uuid

    from adaptune.config import load_settings
    from adaptune.store import open_store
    from pg_cluster import cluster, fresh_database, unavailable_reason

    if reason := unavailable_reason():
        pytest.skip(reason)
    with cluster() as admin:
        pg = open_store(load_settings(database_url=fresh_database(admin, f"r_{uuid.uuid4().hex}")))
        try:
            with pg.begin() as conn:
                add_domain(conn, "alpha")
            v1, v2 = (register(pg, "alpha", tiny[1], strategy="adaptive") for _ in range(2))
            promote(pg, v1.version)
            promote(pg, v2.version)
            set_metrics(pg, v2.version, {"window": {"nll": 1.0}})
            assert rollback(pg, "alpha").version == v1.version
            assert delete(pg, v1.version, force=True).cleared_aliases == ("production",)
            (rec,) = list_versions(pg)
            assert (rec.version, rec.metrics, rec.window) == (
                "alpha-v2",
                {"window": {"nll": 1.0}},
                None,
            )
        finally:
            pg.close()
