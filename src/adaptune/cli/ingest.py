"""``adaptune ingest …``: GitHub, ``gh`` exports, files and Jira into the store."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import typer
from rich.markup import escape

from adaptune.cli.output import err, print_json, progress
from adaptune.errors import ConfigError, InputRejected
from adaptune.ingest import Source
from adaptune.ingest import ingest as run_ingest
from adaptune.ingest.files import file_source
from adaptune.ingest.gh_export import gh_export_source
from adaptune.ingest.github import GitHubSource
from adaptune.ingest.jira import JiraSource
from adaptune.store import open_store
from adaptune.types import IngestReport

app = typer.Typer(help="Get issues from a tracker or a file into the store.", no_args_is_help=True)

DomainOpt = typer.Option(None, "--domain", help="Domain to put the source in (default: its own).")
JsonOpt = typer.Option(False, "--json", help="Print the report as JSON on stdout.")
StrictOpt = typer.Option(False, "--strict", help="Reject the whole file if any row is bad.")
GITHUB_API = "https://api.github.com"
ApiUrlOpt = typer.Option(
    GITHUB_API, "--api-url", help="API base URL (Enterprise: https://HOST/api/v3)."
)
GitHubTokenOpt = typer.Option(None, "--token", help="API token (default: $GITHUB_TOKEN).")


def github_source(
    repo: str,
    api_url: str = GITHUB_API,
    token: str | None = None,
    since: datetime | None = None,
    state: str = "all",
    comments: bool = False,
    progress: Callable[[str], None] | None = None,
) -> GitHubSource:
    """A GitHub source from command-line values; the token defaults to ``$GITHUB_TOKEN``."""
    if state not in ("all", "open", "closed"):
        raise ConfigError(f"--state must be all, open or closed, not {state!r}.")
    return GitHubSource(
        repo,
        api_url=api_url,
        token=token or os.environ.get("GITHUB_TOKEN") or None,
        since=since,
        state=state,
        comments=comments,
        progress=progress,
    )


def _run(
    source_factory: Callable[[Callable[[str], None]], Source], domain: str | None, as_json: bool
) -> None:
    store = open_store()
    try:
        with progress() as show:
            report = run_ingest(source_factory(show), store, domain=domain)
        _report(report, store.status(), as_json)
    finally:
        store.close()


def _report(report: IngestReport, status: dict, as_json: bool) -> None:
    if as_json:
        data = asdict(report)
        data["repos"] = [f"{s}:{r}" for s, r in sorted(report.repos)]
        data["rejected"] = [asdict(r) for r in report.rejected]
        print_json(data)
    else:
        for rej in report.rejected[:10]:
            err.print(f"[yellow]rejected[/] {escape(f'{rej.where}: {rej.reason}')}", soft_wrap=True)
        if len(report.rejected) > 10:
            err.print(f"[yellow]… and {len(report.rejected) - 10} more rejected rows[/]")
        what = (
            "not modified (304)"
            if report.not_modified
            else (
                f"{report.seen} rows read: {report.inserted} new, {report.updated} updated, "
                f"{report.unchanged} unchanged, {len(report.rejected)} rejected"
            )
        )
        extra = f", {report.comments} comments" if report.comments else ""
        err.print(
            f"[green]{report.source}[/]: {what}{extra}. Store: {status['issues']} issues, "
            f"{status['pull_requests']} pull requests, {status['comments']} comments.",
            soft_wrap=True,
        )
    if report.rejected:
        raise InputRejected(
            f"{len(report.rejected)} row(s) rejected (the good rows were stored); "
            "fix the input or re-run with --strict to store nothing.",
            rejected=len(report.rejected),
        )


@app.command("file")
def file_cmd(
    paths: list[Path] = typer.Argument(..., help="JSONL, JSONL.gz or JSON-array files."),
    strict: bool = StrictOpt,
    domain: str | None = DomainOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Ingest GitHub REST issue objects from files (the shape of ../shared/data/github)."""
    for path in paths:
        _run(lambda p, path=path: file_source(path, strict=strict, progress=p), domain, as_json)


@app.command("gh-export")
def gh_export_cmd(
    path: Path = typer.Argument(..., help="Output of `gh issue list --json ...`."),
    strict: bool = StrictOpt,
    domain: str | None = DomainOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Ingest the JSON of `gh issue list --json number,title,body,labels,state,...,comments,url`."""
    _run(lambda p: gh_export_source(path, strict=strict, progress=p), domain, as_json)


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"--since {value!r} is not an ISO date (e.g. 2024-01-31T00:00:00Z)."
        ) from None


@app.command("github")
def github_cmd(
    repo: str = typer.Argument(..., help="OWNER/REPO"),
    api_url: str = ApiUrlOpt,
    since: str | None = typer.Option(None, "--since", help="Only issues updated since (ISO)."),
    state: str = typer.Option("all", "--state", help="all, open or closed."),
    comments: bool = typer.Option(False, "--comments", help="Also fetch closed issues' comments."),
    token: str | None = GitHubTokenOpt,
    domain: str | None = DomainOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Sync a GitHub repository's issues and PRs (incremental, conditional, rate-limit aware)."""
    cursor = _since(since)
    _run(
        lambda p: github_source(repo, api_url, token, cursor, state, comments, progress=p),
        domain,
        as_json,
    )


@app.command("jira")
def jira_cmd(
    url: str = typer.Option(..., "--url", help="Jira base URL (https://you.atlassian.net)."),
    jql: str = typer.Option(..., "--jql", help='JQL, e.g. "project = PROJ".'),
    api: str = typer.Option("auto", "--api", help="auto, cloud (v3 search/jql) or server (v2)."),
    email: str | None = typer.Option(None, "--email", help="Account e-mail (default $JIRA_EMAIL)."),
    token: str | None = typer.Option(
        None, "--token", help="API token or PAT (default $JIRA_API_TOKEN, then $JIRA_TOKEN)."
    ),
    domain: str | None = DomainOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Ingest Jira issues found by a JQL search (Cloud or Server/Data Center)."""
    email = email or os.environ.get("JIRA_EMAIL") or None
    # An e-mail pairs with a Cloud API token (Basic auth); a token alone is a Server PAT.
    env = os.environ
    paired = (
        env.get("JIRA_API_TOKEN") if email else env.get("JIRA_TOKEN") or env.get("JIRA_API_TOKEN")
    )
    token = token or paired or None
    _run(
        lambda p: JiraSource(url, jql, email=email, token=token, api=api, progress=p),
        domain,
        as_json,
    )
