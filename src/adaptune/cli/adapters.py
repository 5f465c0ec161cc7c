"""``adaptune adapters …``: list, show, promote, roll back, delete and export adapter versions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from adaptune.cli.output import out, print_json
from adaptune.registry import (
    AdapterVersion,
    delete,
    export,
    list_versions,
    promote,
    resolve,
    rollback,
)
from adaptune.store import Store, open_store
from adaptune.store.domains import resolve_domain

app = typer.Typer(
    help="Adapter versions: lineage, aliases (production, candidate), rollback, export.",
    no_args_is_help=True,
)
DomainOpt = typer.Option(None, "--domain", help="Domain (default: the only one).")
JsonOpt = typer.Option(False, "--json", help="Print the JSON contract.")


def _store() -> Store:
    return open_store()


def summary(rec: AdapterVersion) -> dict[str, Any]:
    """One version in the shape of ``adaptune adapters list --json``."""
    return rec.summary()


def detail(rec: AdapterVersion) -> dict[str, Any]:
    """Everything known about one version (``adaptune adapters show --json``)."""
    return {
        **rec.manifest(),
        "aliases": list(rec.aliases),
        "path": str(rec.path),
    }


@app.command("list")
def list_cmd(
    domain: str | None = typer.Option(None, "--domain", help="Only this domain (default: all)."),
    as_json: bool = JsonOpt,
) -> None:
    """List adapter versions by domain, oldest first: every domain's, or one with --domain."""
    store = _store()
    name = None
    if domain is not None:
        with store.begin() as conn:
            name = resolve_domain(conn, domain).name
    versions = list_versions(store, name)
    if as_json:
        print_json([summary(v) for v in versions])
        return
    several = len({v.domain for v in versions}) > 1
    table = Table(*(["domain"] if several else []), "version", "parent", "strategy", "window",
                  "dataset", "aliases", "created")  # fmt: skip
    for v in versions:
        parent = f"{v.parent} (deleted)" if v.parent_deleted_at else v.parent
        table.add_row(
            *([v.domain] if several else []),
            v.version,
            parent or "-",
            v.strategy,
            v.window or "-",
            (v.dataset or "-")[:12],
            ", ".join(v.aliases) or "-",
            v.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    out.print(table)
    if not versions:
        out.print(f"no adapters in domain {name} yet" if name else "no adapters yet")


@app.command("show")
def show_cmd(
    version: str = typer.Argument(..., help="Version, alias or DOMAIN:ALIAS."),
    domain: str | None = DomainOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Show one version: lineage, base model, data, config, cost and metrics."""
    data = detail(resolve(_store(), domain, version))
    if as_json:
        print_json(data)
        return
    table = Table("field", "value", show_header=False)
    for key, value in data.items():
        table.add_row(key, _cell(value))
    out.print(table)


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return "\n".join(f"{k}: {v}" for k, v in value.items()) or "-"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "-"
    return "-" if value is None else str(value)


@app.command("promote")
def promote_cmd(
    version: str = typer.Argument(..., help="Version to promote."),
    alias: str = typer.Option("production", "--alias", help="production or candidate."),
) -> None:
    """Point an alias of the version's domain at it."""
    rec = promote(_store(), version, alias)
    out.print(f"[bold]{rec.domain}[/] {alias} → [bold]{rec.version}[/]")


@app.command("rollback")
def rollback_cmd(domain: str | None = DomainOpt) -> None:
    """Point production back at the previous production version."""
    rec = rollback(_store(), domain)
    out.print(f"[bold]{rec.domain}[/] production → [bold]{rec.version}[/] (rolled back)")


@app.command("delete")
def delete_cmd(
    version: str = typer.Argument(..., help="Version to delete."),
    force: bool = typer.Option(
        False, "--force", help="Also when it has an alias or children (aliases are cleared)."
    ),
) -> None:
    """Delete a version's folder and record."""
    done = delete(_store(), version, force)
    out.print(f"deleted [bold]{done.version}[/]")
    if done.cleared_aliases:
        out.print(f"cleared aliases: {', '.join(done.cleared_aliases)}")
    if done.orphans:
        out.print(f"children now with a deleted parent: {', '.join(done.orphans)}")


@app.command("export")
def export_cmd(
    version: str = typer.Argument(..., help="Version (or alias) to export."),
    # a str, not a Path: typer turns --to '' into Path('.'), the current folder
    to: str = typer.Option(..., "--to", help="New or empty folder to write."),
    merged: bool = typer.Option(False, "--merged", help="Merge the LoRA into the base model."),
    fmt: str = typer.Option("peft", "--format", help="peft, vllm or gguf (llama.cpp LoRA)."),
    base_gguf: Path = typer.Option(None, "--base-gguf", help="gguf: the base model's GGUF."),
    domain: str | None = DomainOpt,
) -> None:
    """Export a version for PEFT, vLLM or llama.cpp, or as a full merged model."""
    store = _store()
    rec = resolve(store, domain, version)
    path = export(store, rec.version, to, merged=merged, format=fmt, base_gguf=base_gguf)  # type: ignore[arg-type]
    kind = "merged model" if merged else f"{fmt} adapter"
    out.print(f"exported {rec.version} as a {kind} to {path}")
