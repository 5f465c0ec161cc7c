"""``GET /dashboard``: one server-rendered page a person watches to see whether it improves.

Per domain: the adapter lineage with aliases, the evaluation metric of each version over time
(an inline SVG line, lower NLL is better), the production and candidate arms with their feedback
win rates, pending training data, recent tickets and the job queue. No JavaScript, no build.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from adaptune.serve.auth import require

router = APIRouter(tags=["dashboard"])


def headline(metrics: dict[str, Any], window: str | None) -> float | None:
    """The one number plotted per version: its held-out answer NLL on its own window.

    Read from what the training job's gate recorded (``gate.candidate[window]``), else any
    ``nll`` the evaluation stored; ``None`` when the version was never evaluated.
    """
    gate = metrics.get("gate") if isinstance(metrics, dict) else None
    per_window = gate.get("candidate") if isinstance(gate, dict) else None
    if isinstance(per_window, dict) and per_window:
        value = per_window.get(window) if window in per_window else list(per_window.values())[-1]
        return _finite(value)
    for key in ("nll", "answer_nll", "heldout_nll"):
        if key in metrics:
            value = metrics[key]
            if isinstance(value, dict):
                value = value.get(window) if window in value else None
            return _finite(value)
    return None


def _finite(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def svg_line(points: list[tuple[str, float | None]], width: int = 520, height: int = 160) -> str:
    """An inline SVG polyline of ``(label, value)`` points; gaps where a value is missing."""
    known = [v for _, v in points if v is not None]
    if not known:
        return '<p class="muted">No evaluated versions yet.</p>'
    lo, hi = min(known), max(known)
    span = (hi - lo) or 1.0
    pad, n = 28, max(len(points) - 1, 1)
    coords = []
    for i, (label, value) in enumerate(points):
        if value is None:
            continue
        x = pad + i * (width - 2 * pad) / n
        y = pad + (hi - value) / span * (height - 2 * pad) if hi != lo else height / 2
        coords.append((x, y, label, value))
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in coords)
    dots = "".join(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4"><title>{label}: {v:.3f}</title></circle>'
        f'<text x="{x:.1f}" y="{height - 6}" text-anchor="middle">{label}</text>'
        f'<text x="{x:.1f}" y="{y - 8:.1f}" text-anchor="middle">{v:.2f}</text>'
        for x, y, label, v in coords
    )
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="held-out NLL per version"><polyline points="{line}" '
        f'fill="none" stroke="#2563eb" stroke-width="2"/>{dots}</svg>'
    )


def gather(state: Any) -> dict[str, Any]:
    """Everything the page shows, per domain."""
    from adaptune.feedback import win_rates
    from adaptune.jobs import list_jobs
    from adaptune.jobs.trigger import pending_data
    from adaptune.registry import list_versions
    from adaptune.serve.tickets import recent
    from adaptune.store.domains import list_domains

    with state.store.begin() as conn:
        domains = list_domains(conn)
    rates = win_rates(state.store)
    out = []
    for domain in domains:
        versions = list_versions(state.store, domain.name)
        lineage = [
            {
                **v.summary(),
                "headline": headline(v.metrics, v.window),
                "gate": v.metrics.get("gate") if isinstance(v.metrics, dict) else None,
            }
            for v in versions
        ]
        out.append(
            {
                "name": domain.name,
                "sources": list(domain.sources),
                "lineage": lineage,
                "chart": svg_line(
                    [(v["version"].rsplit("-", 1)[-1], v["headline"]) for v in lineage]
                ),
                "arms": rates.get(domain.name, {}).get("arms", {}),
                "ab": rates.get(domain.name, {}).get("candidate_minus_production"),
                "pending": pending_data(state.store, domain.name),
                "tickets": recent(state, domain.name, 10),
                "jobs": [j.to_dict() for j in list_jobs(state.store, domain.name, None, 10)],
            }
        )
    return {"domains": out, "now": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")}


@router.get("/dashboard", response_class=HTMLResponse, dependencies=[Depends(require("read"))])
async def dashboard(request: Request) -> HTMLResponse:
    """The monitoring page (refreshes itself every 30 s)."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    data = await run_in_threadpool(gather, request.app.state.service)
    env = Environment(
        loader=PackageLoader("adaptune.serve", "templates"), autoescape=select_autoescape()
    )
    html = env.get_template("dashboard.html.j2").render(**data)
    return HTMLResponse(html)
