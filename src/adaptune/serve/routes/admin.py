"""Adapters (list, promote, rollback), training jobs and feedback statistics."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool

from adaptune.feedback import win_rates
from adaptune.jobs import enqueue, get_job, list_jobs, queue_depth
from adaptune.jobs.trigger import pending_data
from adaptune.notify import deliver_due, notify
from adaptune.registry import AdapterVersion, list_versions, promote, rollback
from adaptune.serve.auth import require
from adaptune.serve.public import public
from adaptune.serve.routes.tickets import ERRORS
from adaptune.serve.schemas import JobOut, RollbackIn, TrainJobIn
from adaptune.serve.state import ServiceState
from adaptune.serve.tickets import route
from adaptune.store.domains import list_domains

router = APIRouter(prefix="/v1", tags=["admin"])


@router.get("/adapters", responses=ERRORS, dependencies=[Depends(require("read"))])
async def list_adapters(request: Request, domain: str | None = Query(None)) -> list[dict]:
    """Adapter versions (of one domain or all), oldest first, with aliases and metrics."""
    store = request.app.state.service.store
    versions = await run_in_threadpool(list_versions, store, domain)
    return public([v.summary() for v in versions])


def _after_promotion(state: ServiceState, rec: AdapterVersion, event: str) -> None:
    """Load the new adapter ahead of traffic and tell the notification webhooks."""
    preload = getattr(state.generator, "preload", None)
    if callable(preload):
        threading.Thread(target=_safe_preload, args=(preload, rec), daemon=True).start()
    settings = state.settings
    if settings.notify_urls:
        data = {
            "domain": rec.domain,
            "version": rec.version,
            "aliases": list(rec.aliases),
            "reason": "set through the API",
        }
        notify(state.store, event, data, list(settings.notify_urls), settings.notify_format)
        secret = settings.notify_secret.get_secret_value() if settings.notify_secret else None
        # Send now rather than at the worker's next poll; what fails stays in the outbox.
        threading.Thread(target=deliver_due, args=(state.store, secret), daemon=True).start()


def _safe_preload(preload: Callable[[str, Path], object], rec: AdapterVersion) -> None:
    import logging

    try:
        preload(rec.version, rec.path)
    except Exception as exc:  # a failed preload is retried by the first request that needs it
        logging.getLogger(__name__).warning("preloading %s failed: %s", rec.version, exc)


@router.post(
    "/adapters/{version}/promote", responses=ERRORS, dependencies=[Depends(require("admin"))]
)
async def promote_adapter(
    version: str,
    request: Request,
    alias: str = Query("production", pattern="^(production|candidate)$"),
) -> dict:
    """Point ``production`` (or ``candidate``) of the version's domain at it; served at once."""
    state = request.app.state.service
    rec = await run_in_threadpool(promote, state.store, version, alias)
    event = "adapter.promoted" if alias == "production" else "adapter.candidate"
    await run_in_threadpool(_after_promotion, state, rec, event)
    return public(rec.summary())


@router.post("/adapters/rollback", responses=ERRORS, dependencies=[Depends(require("admin"))])
async def rollback_adapter(request: Request, body: RollbackIn | None = None) -> dict:
    """Point ``production`` back at the version that was production before."""
    state = request.app.state.service
    rec = await run_in_threadpool(rollback, state.store, body.domain if body else None)
    await run_in_threadpool(_after_promotion, state, rec, "adapter.rollback")
    return public(rec.summary())


@router.post(
    "/jobs/train",
    response_model=JobOut,
    status_code=202,
    operation_id="queue_training",
    responses={
        **ERRORS,
        202: {
            "description": "The queued (or identical running) job.",
            "links": {
                "GetJob": {
                    "operationId": "get_job",
                    "parameters": {"job_id": "$response.body#/id"},
                    "description": "The job's state, result or error.",
                }
            },
        },
    },
    dependencies=[Depends(require("admin"))],
)
async def queue_training(request: Request, body: TrainJobIn | None = None) -> dict:
    """Queue a training iteration for a domain (the worker runs it); an identical queued or
    running job is returned instead of a second one."""
    state = request.app.state.service
    body = body or TrainJobIn()
    domain = await run_in_threadpool(route, state, body.domain, None)
    payload = body.model_dump(exclude_none=True, exclude={"domain"})
    job = await run_in_threadpool(enqueue, state.store, "train", domain, payload, "api", 3, True)
    return public(job.to_dict())


@router.get("/jobs", responses=ERRORS, dependencies=[Depends(require("read"))])
async def list_jobs_route(
    request: Request, domain: str | None = Query(None), limit: int = Query(50, ge=1, le=500)
) -> list[JobOut]:
    """Jobs, newest first."""
    jobs = await run_in_threadpool(list_jobs, request.app.state.service.store, domain, None, limit)
    return [JobOut(**public(j.to_dict())) for j in jobs]


@router.get(
    "/jobs/{job_id}",
    response_model=JobOut,
    operation_id="get_job",
    responses=ERRORS,
    dependencies=[Depends(require("read"))],
)
async def get_job_route(job_id: str, request: Request) -> dict:
    """One job: its state, result or error."""
    job = await run_in_threadpool(get_job, request.app.state.service.store, job_id)
    if job is None:
        raise HTTPException(404, f"No job {job_id}.")
    return public(job.to_dict())


@router.get("/stats", responses=ERRORS, dependencies=[Depends(require("read"))])
async def stats(request: Request, domain: str | None = Query(None)) -> dict:
    """Feedback win rates per domain and A/B arm with 95 % intervals, pending training data
    and the job queue."""
    state = request.app.state.service

    def gather() -> dict:
        with state.store.begin() as conn:
            names = [d.name for d in list_domains(conn)]
        if domain:
            names = [n for n in names if n == domain]
        return {
            "feedback": win_rates(state.store, domain),
            "pending": {n: pending_data(state.store, n) for n in names},
            "queue": queue_depth(state.store),
        }

    return public(await run_in_threadpool(gather))
