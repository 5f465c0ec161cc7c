"""``adaptune demo``: the main job, end to end on the bundled sample or a GitHub repository."""

from __future__ import annotations

import typer

from adaptune.cli.ingest import GITHUB_API, ApiUrlOpt, GitHubTokenOpt, github_source
from adaptune.cli.output import out, progress
from adaptune.cli.summary import print_summary
from adaptune.errors import ConfigError
from adaptune.store import open_store


def demo(
    quick: bool = typer.Option(False, "--quick", help="Two short windows (a few minutes)."),
    repo: str | None = typer.Option(
        None, "--repo", help="OWNER/REPO: sync this GitHub repository and run on it instead."
    ),
    api_url: str = ApiUrlOpt,
    token: str | None = GitHubTokenOpt,
    comments: bool = typer.Option(
        False,
        "--comments/--no-comments",
        help="With --repo: also fetch closed issues' comments, so that maintainers' answers "
        "count as solutions (one more request per closed issue).",
    ),
    model: str | None = typer.Option(None, "--model", help="Base model folder (default SmolLM2)."),
) -> None:
    """Ingest → dataset → train each strategy over windows → evaluate → report.

    On the bundled sample without network, or with --repo on a live GitHub repository.
    """
    from transformers.utils import logging as hf_logging

    from adaptune.pipeline.demos import demo as run_demo

    if repo is None and (token or comments or api_url != GITHUB_API):
        raise ConfigError("--api-url, --token and --comments go with --repo OWNER/REPO.")
    hf_logging.disable_progress_bar()
    store = open_store()
    try:
        with progress("demo…") as show:
            source = (
                github_source(repo, api_url, token, comments=comments, progress=show)
                if repo
                else None
            )
            lines, metrics, folder = run_demo(store, show, quick, source, model)
    finally:
        store.close()
    for line in lines:
        out.print(line, soft_wrap=True)
    print_summary(metrics, folder)
