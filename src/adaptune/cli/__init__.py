"""The ``adaptune`` command line: one sub-command per pipeline stage.

Errors that adaptune raises on purpose (:class:`~adaptune.errors.AdaptuneError`) become one red
line and a non-zero exit; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import logging
import os
import sys

import typer
from rich.console import Console
from rich.markup import escape

from adaptune import __version__
from adaptune.cli import (
    adapters,
    compare,
    dataset,
    demo,
    domains,
    evaluate,
    ingest,
    serve,
    train,
    worker,
)
from adaptune.errors import AdaptuneError

err = Console(stderr=True)
app = typer.Typer(
    name="adaptune",
    help="A language model that learns from a project's issue tracker, and keeps learning.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(ingest.app, name="ingest")
app.add_typer(domains.app, name="domains")
app.add_typer(dataset.app, name="dataset")
app.add_typer(adapters.app, name="adapters")
app.command("status")(domains.status)
app.command("train")(train.train)
app.command("evaluate")(evaluate.evaluate)
app.command("compare")(compare.compare)
app.command("demo")(demo.demo)
app.command("serve")(serve.serve)
app.add_typer(serve.tokens, name="tokens")
app.command("worker")(worker.worker)
_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"adaptune {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show info logs."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """adaptune: ingest issues, build datasets, train adapters, evaluate, serve."""
    _state["debug"] = debug
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not debug:  # third-party tqdm bars (weights loading, GGUF conversion) drown our own
        os.environ.setdefault("TQDM_DISABLE", "1")
    # httpx logs every request URL at INFO; keep that for --debug only.
    logging.getLogger("httpx").setLevel(logging.DEBUG if debug else logging.WARNING)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except AdaptuneError as exc:
        if _state["debug"]:
            raise
        # The message may hold user text (a path, a title): never read it as rich markup.
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("[red]interrupted[/]")
        sys.exit(130)
