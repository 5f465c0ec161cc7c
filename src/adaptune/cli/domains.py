"""``adaptune domains …`` and ``adaptune status``: what the store holds, per domain."""

from __future__ import annotations

import typer
from rich.table import Table

from adaptune.cli.output import out, print_json
from adaptune.store import open_store
from adaptune.store.domains import add_domain, list_domains

app = typer.Typer(
    help="Group sources into domains (one per project by default).", no_args_is_help=True
)


@app.command("add")
def add(
    name: str = typer.Argument(..., help="Domain name (lower-case)."),
    source: list[str] = typer.Option(
        [], "--source", "-s", help="github:OWNER/REPO or jira:PROJECT (repeatable)."
    ),
) -> None:
    """Create a domain, or add sources to one."""
    store = open_store()
    with store.begin() as conn:
        dom = add_domain(conn, name, source)
    out.print(f"domain [bold]{dom.name}[/]: {', '.join(dom.sources) or 'no sources yet'}")


@app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List domains and their sources."""
    store = open_store()
    with store.begin() as conn:
        domains = list_domains(conn)
    if as_json:
        print_json([{"name": d.name, "sources": list(d.sources)} for d in domains])
        return
    table = Table("domain", "sources")
    for d in domains:
        table.add_row(d.name, "\n".join(d.sources))
    out.print(table)


def status(as_json: bool = typer.Option(False, "--json", help="Print the JSON contract.")) -> None:
    """Show what is stored: issues, pull requests, comments per repo."""
    store = open_store()
    data = store.status()
    if as_json:
        print_json(data)
        return
    table = Table("source", "repo", "issues", "pull requests", "last synced")
    for r in data["repos"]:
        table.add_row(
            r["source"],
            r["repo"],
            str(r["issues"]),
            str(r["pull_requests"]),
            r["last_synced"] or "-",
        )
    out.print(table)
    out.print(
        f"{data['issues']} issues, {data['pull_requests']} pull requests, "
        f"{data['comments']} comments in {data['database']}"
    )
