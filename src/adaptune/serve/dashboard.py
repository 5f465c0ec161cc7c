"""``GET /dashboard``: one server-rendered page a person watches to see whether it improves.

Per domain: the adapter lineage with aliases, the evaluation metric of each version over time
(an inline SVG line, lower NLL is better), the production and candidate arms with their feedback
win rates, pending training data, recent tickets with their feedback and the job queue. No
JavaScript, no build. Rendered with :func:`adaptune.pages.environment` (every value escaped and
scrubbed of secrets) and sent with a strict Content-Security-Policy. Without open reads the page
asks for a log-in (``/login``: a token typed into a form, a read-only session cookie).
"""

from __future__ import annotations

import html
import logging
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse

from adaptune.feedback import win_rates
from adaptune.jobs import list_jobs
from adaptune.jobs.trigger import pending_data
from adaptune.pages import environment, policy
from adaptune.registry import list_versions
from adaptune.serve.auth import ENV_HOLDER, require, token_holder
from adaptune.serve.public import public
from adaptune.serve.sessions import COOKIE, ENV_TOKEN
from adaptune.serve.state import ServiceState
from adaptune.serve.tickets import recent
from adaptune.serve.tokens import digest
from adaptune.store import schema
from adaptune.store.domains import list_domains

log = logging.getLogger(__name__)
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
    coords = [(x, y, html.escape(str(label)), v) for x, y, label, v in coords]
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


def latest_issues(
    state: ServiceState, sources: tuple[str, ...], limit: int = 8
) -> list[dict[str, Any]]:
    """The domain's most recently updated stored issues (what the trackers just sent)."""
    from sqlalchemy import or_, select, tuple_

    pairs = [tuple(s.split(":", 1)) for s in sources if ":" in s]
    if not pairs:
        return []
    t = schema.issues
    query = (
        select(t.c.source, t.c.repo, t.c.number, t.c.title, t.c.state, t.c.updated_at)
        .where(or_(tuple_(t.c.source, t.c.repo).in_(pairs)), t.c.is_pull_request.is_(False))
        .order_by(t.c.updated_at.desc())
        .limit(limit)
    )
    with state.store.begin() as conn:
        rows = conn.execute(query).mappings().all()
    return [
        {
            "ref": f"{r['repo']}#{r['number']}",
            "title": r["title"],
            "state": r["state"],
            "updated_at": r["updated_at"].isoformat() if r["updated_at"] else "",
        }
        for r in rows
    ]


def gather(state: ServiceState) -> dict[str, Any]:
    """Everything the page shows, per domain."""
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
                "issues": latest_issues(state, tuple(domain.sources)),
                "jobs": [j.to_dict() for j in list_jobs(state.store, domain.name, None, 10)],
            }
        )
    # Cleaned before the template slices any text: a token cut in half could slip past.
    return public({"domains": out, "now": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")})


TEMPLATES = Path(__file__).parent / "templates"
_ENV = environment(TEMPLATES)


def _html(description: str) -> dict[str, object]:
    """An OpenAPI response entry for an HTML page."""
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


def page(name: str, status: int = 200, **data: object) -> HTMLResponse:
    """Template ``name`` rendered with ``data``, sent with its strict Content-Security-Policy."""
    html = _ENV.get_template(name).render(**data)
    headers = {"Content-Security-Policy": policy(TEMPLATES, name), "Cache-Control": "no-store"}
    return HTMLResponse(html, status_code=status, headers=headers)


def login_page(message: str | None = None, status: int = 200) -> HTMLResponse:
    """The log-in form (a token typed in, sent in the body, never in the URL)."""
    return page("login.html.j2", status=status, message=message)


@router.get(
    "/dashboard",
    response_class=HTMLResponse,
    responses={401: _html("The log-in form (no valid token or session).")},
    dependencies=[Depends(require("read", page=True))],
)
async def dashboard(request: Request) -> HTMLResponse:
    """The monitoring page (refreshes itself every 30 s)."""
    data = await run_in_threadpool(gather, request.app.state.service)
    return page("dashboard.html.j2", **data)


@router.get("/login", response_class=HTMLResponse)
async def login_form() -> HTMLResponse:
    """The dashboard's log-in form."""
    return login_page()


FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {"token": {"type": "string", "maxLength": 500}},
                    "required": ["token"],
                }
            }
        },
    }
}


@router.post(
    "/login",
    response_class=HTMLResponse,
    status_code=303,
    openapi_extra=FORM,
    responses={
        303: _html("Logged in: a session cookie, on to /dashboard."),
        401: _html("The token is unknown or revoked: the form again."),
        403: _html("The token lacks the read scope: the form again."),
        415: _html("The body is not a form."),
        422: _html("The form has no token."),
    },
)
async def login(request: Request) -> Response:
    """Check the form's token like a bearer token and open a read-only session for it."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return login_page("Send the form (application/x-www-form-urlencoded).", 415)
    raw = await request.body()
    try:
        fields = parse_qs(raw.decode("utf-8"), max_num_fields=10, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        return login_page("The form could not be read.", 422)
    token = (fields.get("token") or [""])[0].strip()
    if not token or len(token) > 500:
        return login_page("Type a token.", 422)
    state = request.app.state.service
    who = await run_in_threadpool(token_holder, state, token)
    if who is None:
        log.warning("dashboard log-in refused: unknown or revoked token")
        return login_page("That token is unknown or revoked.", 401)
    if "read" not in who.scopes:
        return login_page(f"The token {who.name!r} lacks the 'read' scope.", 403)

    session = state.sessions.open(ENV_TOKEN if who == ENV_HOLDER else digest(token))
    log.info("dashboard log-in: %s", who.name)
    response = HTMLResponse(
        '<p>Logged in: <a href="/dashboard">the dashboard</a>.</p>',
        status_code=303,
        headers={"Location": "/dashboard", "Cache-Control": "no-store"},
    )
    response.set_cookie(
        COOKIE,
        session,
        max_age=int(state.sessions.ttl_s),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post(
    "/logout",
    response_class=RedirectResponse,
    status_code=303,
    responses={303: {"description": "Logged out: on to /login.", "content": {}}},
)
async def logout(request: Request) -> Response:
    """End the session of the cookie the request carries."""
    request.app.state.service.sessions.close(request.cookies.get(COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response
