"""The worker: claims queued jobs, runs their handler under a renewed lease, reports the outcome.

Each poll (:meth:`Worker.tick`) runs the new-data trigger, runs at most one job, and delivers
due notifications. A handler raising :class:`~adaptune.errors.AdaptuneError` fails the job for
good (bad data or settings do not improve with retries); any other exception is logged with its
traceback and retried until the job's attempts are used up. A worker that loses its lease (it
stalled past the lease and another worker took the job) throws its result away.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable, Collection, Mapping
from typing import Any

from adaptune.errors import AdaptuneError
from adaptune.jobs.config import WorkerConfig
from adaptune.jobs.queue import FAILED, SUCCEEDED, Job, claim, fail, finish, get_job, renew
from adaptune.jobs.trigger import maybe_enqueue
from adaptune.notify import Notifier, WebhookNotifier, deliver_due
from adaptune.store import Store

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
Handler = Callable[[Store, Job, Progress], dict[str, Any]]
"""Runs one job: ``handler(store, job, progress) -> result`` (JSON-able)."""

_HANDLERS: dict[str, Handler] = {}


def register_handler(kind: str, handler: Handler) -> None:
    """Make ``kind`` a job kind that workers built with :func:`registered_handlers` run.

    The handlers run stages above this package (a ``train`` job trains and evaluates), so they
    are registered from above: ``adaptune worker`` registers the pipeline's ``train`` job.
    """
    _HANDLERS[kind] = handler


def registered_handlers() -> dict[str, Handler]:
    """The registered job kinds and their handlers (a copy)."""
    return dict(_HANDLERS)


def default_owner() -> str:
    """``hostname:pid:random``: unique per worker, and says where a job ran."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class _Lease:
    """Renews a job's lease every third of its length in a background thread."""

    def __init__(self, store: Store, job: Job, owner: str, lease_s: float) -> None:
        self.store, self.job, self.owner, self.lease_s = store, job, owner, lease_s
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job.id[:8]}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                kept = renew(self.store, self.job.id, self.owner, self.lease_s)
            except Exception:  # a database hiccup: the lease has time left, try again
                log.warning("job %s: renewing the lease failed", self.job.id, exc_info=True)
                continue
            if not kept:
                log.warning("job %s: lease lost to another worker", self.job.id)
                self.lost.set()
                return

    def __enter__(self) -> _Lease:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Worker:
    """Runs queued jobs with ``handlers`` (job kind → handler).

    ``lease_s`` and ``poll_s`` default to ``config``'s (itself from the environment);
    ``domains`` limits the worker (claims and trigger) to some domains. ``progress(job, message)``
    hears the handlers' progress and ``on_end(job)`` each job as its attempt ended.
    """

    def __init__(
        self,
        store: Store,
        handlers: Mapping[str, Handler],
        owner: str | None = None,
        lease_s: float | None = None,
        poll_s: float | None = None,
        config: WorkerConfig | None = None,
        domains: Collection[str] | None = None,
        notifier: Notifier | None = None,
        progress: Callable[[Job, str], None] | None = None,
        on_end: Callable[[Job], None] | None = None,
    ) -> None:
        self.store = store
        self.handlers = dict(handlers)
        self.config = config or WorkerConfig.from_env()
        self.owner = owner or default_owner()
        self.lease_s = lease_s or self.config.lease_s
        self.poll_s = poll_s or self.config.poll_s
        self.domains = list(domains) if domains is not None else None
        urls, fmt = self.config.notify_urls, self.config.notify_format
        self.notifier = notifier or (WebhookNotifier(store, urls, fmt) if urls else None)
        self._progress = progress
        self._on_end = on_end

    def run_once(self) -> Job | None:
        """Claim one job and run it; the job as it ended (``None`` when the queue was empty)."""
        job = claim(self.store, self.owner, self.lease_s, domains=self.domains)
        if job is None:
            return None
        log.info("job %s (%s, %s): attempt %d", job.id, job.kind, job.domain, job.attempts)
        if self._execute(job):
            ended = get_job(self.store, job.id)
            if ended is not None and ended.state in (SUCCEEDED, FAILED):
                self._announce(ended)
        ended = get_job(self.store, job.id)
        if ended is not None and self._on_end is not None:
            self._on_end(ended)
        return ended

    def tick(self) -> Job | None:
        """One poll: the new-data trigger, at most one job, then due notifications."""
        threshold = self.config.train_threshold
        if "train" in self.handlers and threshold > 0:
            maybe_enqueue(self.store, threshold, self.domains)
        job = self.run_once()
        deliver_due(self.store, self.config.notify_secret)
        return job

    def run_forever(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set; a job in progress is finished before returning."""
        log.info("worker %s polling every %.1f s", self.owner, self.poll_s)
        while not stop.is_set():
            try:
                job = self.tick()
            except Exception:  # the database may be briefly away: keep the worker alive
                log.exception("worker poll failed; retrying in %.1f s", self.poll_s)
                job = None
            if job is None:
                stop.wait(self.poll_s)

    def _execute(self, job: Job) -> bool:
        """Run ``job``'s handler and record the outcome; ``False`` when the lease was lost."""
        handler = self.handlers.get(job.kind)
        if handler is None:
            known = ", ".join(sorted(self.handlers)) or "none"
            error = (
                f"No handler for job kind '{job.kind}' (this worker runs: {known}); "
                "cancel the job or run a worker that knows this kind."
            )
            return self._record(job, None, error, retry=False)
        with _Lease(self.store, job, self.owner, self.lease_s) as lease:
            try:
                result, error, retry = handler(self.store, job, self._progress_of(job)), None, False
            except AdaptuneError as exc:
                result, error, retry = None, str(exc), False
            except Exception as exc:
                log.exception("job %s (%s) crashed", job.id, job.kind)
                result, error, retry = None, f"{type(exc).__name__}: {exc}", True
            except BaseException:
                fail(self.store, job.id, self.owner, "the worker was interrupted", retry=True)
                raise
        if lease.lost.is_set():
            log.warning("job %s: lease lost while running; its result is abandoned", job.id)
            return False
        return self._record(job, result, error, retry)

    def _record(self, job: Job, result: object, error: str | None, retry: bool) -> bool:
        if error is None:
            body = result if isinstance(result, dict) else {"value": result}
            kept = finish(self.store, job.id, self.owner, body)
        else:
            kept = fail(self.store, job.id, self.owner, error, retry=retry)
        if not kept:
            log.warning("job %s: lease lost before the outcome was saved; abandoned", job.id)
        return kept

    def _progress_of(self, job: Job) -> Progress:
        def progress(message: str) -> None:
            log.info("job %s: %s", job.id[:8], message)
            if self._progress is not None:
                self._progress(job, message)

        return progress

    def _announce(self, job: Job) -> None:
        """Tell the notifier how ``job`` ended (and about a train job's adapter)."""
        if self.notifier is None:
            return
        base = {"id": job.id, "kind": job.kind, "domain": job.domain, "trigger": job.trigger}
        base["attempts"] = job.attempts
        try:
            if job.state == FAILED:
                self.notifier.send("job.failed", {**base, "error": job.error})
                return
            self.notifier.send("job.succeeded", {**base, "result": job.result})
            if (adapter := adapter_event(job)) is not None:
                self.notifier.send(*adapter)
        except Exception:  # a notification must never fail the job that already ended
            log.exception("job %s: queueing notifications failed", job.id)


def _nll_change(gate: Mapping[str, Any]) -> dict[str, Any]:
    """``before``/``after`` NLL on the gate's newest window (as the pipeline's train job records
    it)."""
    if gate.get("before") is not None and gate.get("after") is not None:
        return {k: gate[k] for k in ("metric", "before", "after") if gate.get(k) is not None}
    newest, against = gate.get("newest"), gate.get("against")
    reference, candidate = gate.get(against or "") or {}, gate.get("candidate") or {}
    if not isinstance(reference, Mapping) or not isinstance(candidate, Mapping):
        return {}
    before, after = reference.get(newest), candidate.get(newest)
    if before is None or after is None:
        return {}
    return {"metric": f"{newest} NLL", "before": before, "after": after}


def adapter_event(job: Job) -> tuple[str, dict[str, Any]] | None:
    """``adapter.promoted`` or ``adapter.candidate`` for a train job whose result names a version.

    The gate's ``reason`` is copied, and the newest window's NLL before and after when known.
    """
    result = job.result or {}
    if job.kind != "train" or not result.get("version"):
        return None
    gate = result.get("gate") or {}
    data = {
        "version": result["version"],
        "domain": job.domain,
        "parent": result.get("parent"),
        "window": result.get("window"),
        "job_id": job.id,
        "reason": gate.get("reason"),
    }
    data |= _nll_change(gate)
    return ("adapter.promoted" if result.get("promoted") else "adapter.candidate"), data
