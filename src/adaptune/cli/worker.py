"""``adaptune worker``: run queued jobs (training) and queue new ones when enough data arrived."""

from __future__ import annotations

import dataclasses
import signal
import threading
from types import FrameType
from typing import Any

import typer

from adaptune.cli.output import note, out
from adaptune.errors import AdaptuneError
from adaptune.jobs import Job, Worker, WorkerConfig, register_handler, registered_handlers
from adaptune.jobs.worker import Progress
from adaptune.store import Store, open_store
from adaptune.store.domains import resolve_domain


def train_handler(store: Store, job: Job, progress: Progress) -> dict[str, Any]:
    """The ``train`` job: one adaptive iteration of ``job.domain`` through the promotion gate
    (:func:`adaptune.pipeline.train_job.train_job`)."""
    try:  # here, not at the top: the CLI's --help and a worker without the ml extras stay light
        from adaptune.pipeline.train_job import train_job
    except ImportError as exc:
        raise AdaptuneError(
            f"Training jobs need adaptune.pipeline.train_job, which cannot be imported ({exc}); "
            "reinstall adaptune with its training extras."
        ) from None
    return train_job(store, job.domain, {**job.payload, "job_id": job.id}, progress)


def register_handlers() -> None:
    """Register the job kinds ``adaptune worker`` runs: ``train``."""
    register_handler("train", train_handler)


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
    store = open_store()
    config = WorkerConfig.from_env()
    if poll is not None:
        config = dataclasses.replace(config, poll_s=poll)
    if domain is not None:
        with store.engine.connect() as conn:
            resolve_domain(conn, domain)
    register_handlers()
    runner = Worker(
        store,
        registered_handlers(),
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
