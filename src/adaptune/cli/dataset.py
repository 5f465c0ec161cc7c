"""``adaptune dataset …``: build, inspect, export and sample a domain's dataset."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from adaptune.cli.output import err, out, print_json
from adaptune.errors import ConfigError
from adaptune.store import open_store
from adaptune.store.domains import resolve_domain

app = typer.Typer(help="Build and inspect training / evaluation sets.", no_args_is_help=True)
DomainOpt = typer.Option(None, "--domain", help="Domain (default: the only one).")
BuildOpt = typer.Option(None, "--build", help="Build id or prefix (default: the latest).")


def _folder(domain: str | None, build: str | None) -> tuple[str, Path]:
    from adaptune.dataset.artifacts import find_build

    store = open_store()
    with store.begin() as conn:
        name = resolve_domain(conn, domain).name
    return name, find_build(store.settings.home, name, build)


@app.command("build")
def build_cmd(
    window: str = typer.Option("quarter", "--window", help="quarter, month or N per window."),
    heldout: float = typer.Option(0.2, "--heldout", help="Held-out share of each window."),
    domain: str | None = DomainOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the build summary as JSON."),
) -> None:
    """Build the domain's dataset from the stored issues (immutable, content-hashed)."""
    from adaptune.dataset.build import BuildConfig
    from adaptune.pipeline import build_dataset

    store = open_store()
    with err.status("building…") as st:
        config = BuildConfig(window=window, heldout=heldout)
        result = build_dataset(store, domain, config, st.update)
    if as_json:
        print_json(_show(result.manifest))
        return
    _print_summary(result.manifest)
    out.print(f"build [bold]{result.build_id}[/] in {result.path}")


def _show(man: dict) -> dict:
    return {
        "build": man["build"],
        "domain": man["domain"],
        "tasks": man["tasks"],
        "rejected": man["rejected"],
    }


def _print_summary(man: dict) -> None:
    table = Table("task", "total", "windows", "train", "held out", title=f"build {man['build']}")
    for name, t in man["tasks"].items():
        train = sum(w["train"] for w in t["windows"])
        held = sum(w["heldout"] for w in t["windows"])
        table.add_row(name, str(t["total"]), str(len(t["windows"])), str(train), str(held))
    out.print(table)
    rej = ", ".join(f"{k} {v}" for k, v in man["rejected"].items()) or "none"
    out.print(f"rejected: {rej}")


@app.command("show")
def show_cmd(
    domain: str | None = DomainOpt,
    build: str | None = BuildOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the JSON contract."),
) -> None:
    """Show a build: tasks, windows, rejections."""
    from adaptune.dataset.artifacts import read_manifest

    _name, folder = _folder(domain, build)
    man = read_manifest(folder)
    if as_json:
        print_json(_show(man))
        return
    _print_summary(man)
    out.print((folder / "datacard.md").read_text(encoding="utf-8"))


@app.command("export")
def export_cmd(
    to: Path = typer.Option(..., "--to", help="Output file (.jsonl or .parquet)."),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl or parquet."),
    task: str = typer.Option("qa", "--task", help="qa, triage or duplicates."),
    window: str | None = typer.Option(None, "--window", help="Only this window."),
    split: str | None = typer.Option(None, "--split", help="Only train or heldout."),
    domain: str | None = DomainOpt,
    build: str | None = BuildOpt,
) -> None:
    """Export one task of a build, optionally one window or split."""
    from adaptune.dataset.artifacts import example_to_json, iter_examples

    if fmt not in ("jsonl", "parquet"):
        raise ConfigError(f"--format must be jsonl or parquet, not {fmt!r}.")
    _name, folder = _folder(domain, build)
    rows = [
        example_to_json(e)
        for e in iter_examples(folder, task)
        if (window is None or e.window == window) and (split is None or e.split == split)
    ]
    to.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        to.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        for r in rows:
            r["meta"] = json.dumps(r["meta"], ensure_ascii=False)
        pq.write_table(pa.Table.from_pylist(rows), to)
    out.print(f"{len(rows)} {task} examples → {to}")


@app.command("sample")
def sample_cmd(
    task: str = typer.Option("qa", "--task", help="qa, triage or duplicates."),
    n: int = typer.Option(3, "-n", help="How many."),
    domain: str | None = DomainOpt,
    build: str | None = BuildOpt,
) -> None:
    """Print a few examples, to see what the model will learn."""
    from adaptune.dataset.artifacts import iter_examples

    _name, folder = _folder(domain, build)
    for i, ex in enumerate(iter_examples(folder, task)):
        if i >= n:
            break
        out.rule(f"{ex.id} · {ex.window} · {ex.split} · {ex.solution_source or ''}")
        out.print("[bold]question[/]\n" + ex.question[:1500], markup=True, highlight=False)
        out.print("[bold]answer[/]\n" + ex.answer[:1500], markup=True, highlight=False)
