"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from adaptune.serve.metrics import CONTENT_TYPE

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz() -> dict:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {}})
async def readyz(request: Request) -> JSONResponse:
    """Database reachable, every domain's index built, the model loaded: 200, else 503."""
    report = await run_in_threadpool(request.app.state.service.readiness)
    return JSONResponse(report, status_code=200 if report["ready"] else 503)


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus text: requests, latencies, tickets, generation, queue, production adapters."""
    body = await run_in_threadpool(request.app.state.service.metrics.render)
    return Response(body, media_type=CONTENT_TYPE)
