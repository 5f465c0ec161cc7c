"""A ticket in, triage + similar issues + an answer out, stored and attributed.

The prompt is the one the adapters were trained with: the ticket's scrubbed question (title,
cleaned body, environment) after the similar *resolved* issues and their fixes. The answering
adapter is the domain's ``production`` one, or ``candidate`` for the A/B share of tickets.
"""

from __future__ import annotations

import json
import logging
import random
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from adaptune.errors import AdaptuneError, DomainError
from adaptune.feedback import ticket_feedback
from adaptune.generate import GenerationError, Request
from adaptune.registry import AdapterVersion, RegistryError, get
from adaptune.registry.aliases import alias_target, production_stack
from adaptune.serve.schemas import TicketIn
from adaptune.serve.state import ServiceState
from adaptune.store import schema
from adaptune.store.domains import domain_of, list_domains, resolve_domain
from adaptune.types import Issue

log = logging.getLogger(__name__)


class TicketNotFound(AdaptuneError):
    """No ticket has that id."""


def route(state: ServiceState, domain: str | None, repo: str | None) -> str:
    """The domain a ticket belongs to: named, or by its repo / Jira project, or the only one."""
    with state.store.begin() as conn:
        if domain:
            return resolve_domain(conn, domain).name
        if repo:
            source = "github" if "/" in repo else "jira"
            found = domain_of(conn, source, repo)
            if found is None:
                raise DomainError(f"No domain holds {source}:{repo}; ingest it first.")
            return found
        names = [d.name for d in list_domains(conn)]
    if len(names) == 1:
        return names[0]
    if not names:
        raise DomainError("No domain exists yet; ingest a project's issues first.")
    raise DomainError(f"Name the ticket's domain or repo: one of {', '.join(names)}.")


def choose_arm(state: ServiceState, domain: str) -> tuple[str, AdapterVersion | None, list[str]]:
    """``(arm, AdapterVersion | None, warnings)``: the candidate for the A/B share, else
    production; a version whose files are broken is skipped for the previous production one
    (the last good adapter keeps serving), and the base model answers when none is usable."""
    with state.store.begin() as conn:
        production = alias_target(conn, domain, "production")
        candidate = alias_target(conn, domain, "candidate")
        earlier = production_stack(conn, domain)[::-1] if production else []
    share = state.settings.ab_share
    picks = []
    if candidate and share > 0 and random.random() < share:
        picks.append(("candidate", candidate))
    picks += [("production", v) for v in dict.fromkeys([production, *earlier]) if v]
    warnings = []
    for arm, version in picks:
        try:
            return arm, get(state.store, version), warnings
        except RegistryError as exc:  # a broken version must not stop the service answering
            log.error("adapter %s (%s) unusable, falling back: %s", version, arm, exc)
            warnings.append(f"adapter {version} is unusable ({exc}); answered with a fallback")
    return "base", None, warnings


def _question(title: str, body: str, labels: list[str]) -> tuple[str, dict]:
    from adaptune.dataset.tasks import question_text

    now = datetime.now(UTC)
    issue = Issue(
        source="ticket",
        repo="-",
        number=0,
        title=title,
        body=body,
        state="open",
        created_at=now,
        updated_at=now,
        labels=tuple(labels),
    )
    return question_text(issue)


def answer(state: ServiceState, ticket: TicketIn, client: str | None) -> dict[str, Any]:
    """Handle ``POST /v1/tickets``: returns the stored ticket in the API's shape."""
    domain = route(state, ticket.domain, ticket.repo)
    settings = state.settings
    index = state.index(domain)
    from adaptune.triage import ticket_question

    text = ticket_question(ticket.title, ticket.body)  # what stored issues were indexed by
    similar = index.search(text, k=settings.similar_k)
    duplicate_of = index.duplicate_of(similar, settings.duplicate_threshold)
    classifier = state.triage(domain)
    triage = classifier.predict([text])[0] if classifier is not None else None
    out_answer, error = None, None
    if ticket.generate and state.generator is not None:
        question, facts = _question(ticket.title, ticket.body, ticket.labels)
        out_answer, error = _generate(state, domain, ticket, question, facts, similar)
    row = {
        "id": uuid.uuid4().hex,
        "domain": domain,
        "title": ticket.title,
        "body": ticket.body,
        "labels": json.dumps(ticket.labels),
        "triage": json.dumps(triage) if triage else None,
        "similar": json.dumps([_public(h) for h in similar]),
        "duplicate_of": duplicate_of,
        "answer": json.dumps(out_answer) if out_answer else None,
        "adapter_version": out_answer["adapter_version"] if out_answer else None,
        "arm": out_answer["arm"] if out_answer else None,
        "client": client,
        "created_at": datetime.now(UTC),
    }
    with state.store.begin() as conn:
        conn.execute(schema.tickets.insert().values(**row))
    state.metrics.tickets.labels(domain, row["arm"] or "none").inc()
    result = _shape(row)
    if error:
        result["answer_error"] = error
    return result


def _generate(
    state: ServiceState,
    domain: str,
    ticket: TicketIn,
    question: str,
    facts: dict,
    similar: list[dict],
) -> tuple[dict | None, str | None]:
    arm, version, warnings = choose_arm(state, domain)
    k = state.settings.context_k
    context = tuple((h["title"], h["solution"]) for h in similar if h.get("solution"))[:k]
    request = Request(
        question=question,
        context=context,
        signature=facts.get("signature"),
        adapter_version=version.version if version else None,
        adapter_path=version.path if version else None,
        max_new_tokens=ticket.max_new_tokens or state.settings.max_new_tokens,
    )
    try:
        got = state.generator.generate(request)
    except GenerationError as exc:
        log.error("generation failed for domain %s (%s): %s", domain, arm, exc)
        return None, "; ".join([*warnings, str(exc)])
    state.metrics.generated_tokens.inc(got.tokens)
    state.metrics.generation_seconds.inc(got.seconds)
    return {
        "text": got.text,
        "adapter_version": request.adapter_version,
        "arm": arm,
        "latency_ms": round(got.seconds * 1000, 1),
    }, "; ".join(warnings) or None


def _public(hit: dict) -> dict:
    keys = ("number", "title", "url", "score", "state", "solution")
    return {k: (round(float(hit[k]), 4) if k == "score" else hit.get(k)) for k in keys}


def _json(row: dict, column: str, default: Any) -> Any:
    """A JSON column's value; a corrupt one is logged and read as ``default`` (never a 500)."""
    text = row[column]
    if not text:
        return default
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        log.warning("ticket %s: column %s is not JSON; shown as empty", row["id"], column)
        return default


def _shape(row: dict) -> dict[str, Any]:
    created = row["created_at"]
    return {
        "id": row["id"],
        "domain": row["domain"],
        "triage": _json(row, "triage", None),
        "similar": _json(row, "similar", []),
        "duplicate_of": row["duplicate_of"],
        "answer": _json(row, "answer", None),
        "created_at": created.isoformat() if hasattr(created, "isoformat") else created,
    }


def fetch(state: ServiceState, ticket_id: str) -> dict[str, Any]:
    """A stored ticket in the API's shape, with its feedback."""
    t = schema.tickets
    with state.store.begin() as conn:
        row = conn.execute(select(t).where(t.c.id == ticket_id)).mappings().first()
    if row is None:
        raise TicketNotFound(f"No ticket {ticket_id}.")
    return {**_shape(dict(row)), "feedback": ticket_feedback(state.store, ticket_id)}


def recent(state: ServiceState, domain: str, limit: int = 10) -> list[dict[str, Any]]:
    """The domain's newest tickets, for the dashboard."""
    t = schema.tickets
    with state.store.begin() as conn:
        rows = (
            conn.execute(
                select(t).where(t.c.domain == domain).order_by(t.c.created_at.desc()).limit(limit)
            )
            .mappings()
            .all()
        )

    return [
        {
            **_shape(dict(r)),
            "title": r["title"],
            "feedback": ticket_feedback(state.store, r["id"]),
        }
        for r in rows
    ]
