"""``adaptune worker``: run queued jobs (training) and queue new ones when enough data arrived."""

from __future__ import annotations

import dataclasses
import signal
import threading
from types import FrameType

import typer

from adaptune.cli.output import note, out
from adaptune.jobs import Job, Worker, WorkerConfig, default_handlers


def summary(job: Job) -> str:
    """One line per finished attempt: id, kind, domain, state, and the error or new version."""
    line = f"job {job.id[:8]} {job.kind} ({job.domain or 'no domain'}): {job.state}"
    if job.error and job.state != "succeeded":
        line += f" after {job.attempts} attempt(s): {job.error}"
    elif job.result and job.result.get("version"):
        promoted = " (promoted)" if job.result.get("promoted") else ""
        line += f" → {job.result['version']}{promoted}"
    return line


def _show(job: Job) -> None:
    style = {"succeeded": "green", "failed": "red"}.get(job.state, "yellow")
    out.print(f"[{style}]{summary(job)}[/]", soft_wrap=True)


def _stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM/SIGINT finish the current job and stop; a second SIGINT aborts it."""

    def handle(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()
        note("stopping after the current job (Ctrl-C again to abort it)")

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def worker(
    once: bool = typer.Option(
        False, "--once", help="Run the trigger and at most one job, then exit."
    ),
    domain: str | None = typer.Option(None, "--domain", help="Only this domain's jobs."),
    poll: float | None = typer.Option(None, "--poll", help="Seconds between polls (default 2)."),
) -> None:
    """Run queued jobs; queue training when enough new issues or corrections arrived."""
    from adaptune.store import open_store
    from adaptune.store.domains import resolve_domain

    store = open_store()
    config = WorkerConfig.from_env()
    if poll is not None:
        config = dataclasses.replace(config, poll_s=poll)
    if domain is not None:
        with store.engine.connect() as conn:
            resolve_domain(conn, domain)
    runner = Worker(
        store,
        default_handlers(),
        config=config,
        domains=[domain] if domain else None,
        progress=lambda job, message: note(f"{job.id[:8]}: {message}"),
        on_end=_show,
    )
    if once:
        if runner.tick() is None:
            out.print("no job queued")
        return
    stop = threading.Event()
    _stop_on_signals(stop)
    note(f"worker {runner.owner}: polling every {runner.poll_s:g} s (Ctrl-C stops)")
    runner.run_forever(stop)
