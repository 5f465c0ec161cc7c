"""Feedback on served answers → qa examples (``solution_source: feedback``).

Two kinds of feedback teach: a *corrected answer* (the person wrote the fix the model should
have given) and an *accepted resolution* (rated ``up`` and marked resolved: the served answer
was the fix). A down-rated answer without a correction says what is wrong, not what is right,
so it is not an example. Only each ticket's latest feedback counts: a later rating overrides an
earlier one. The question is built from the ticket like an issue's (same cleaning, same
scrubbing), the answer is scrubbed like an issue's fix, and ``known_at`` is the feedback's time,
so the builder puts the example in the window in which it became known.

Feedback is input from whoever holds a token, so it passes the quality gate like every other
example: the ticket as a question (:func:`~adaptune.dataset.gate.reject_reason`), the answer as
an answer (:func:`~adaptune.dataset.gate.answer_reject_reason`), and the build's
:func:`~adaptune.dataset.taught.dedupe_feedback` drops near copies (a question that copies an
issue's or an earlier ticket's, an answer that copies an earlier taught answer: one answer posted
on many tickets teaches once). Each rejection is counted by reason and client (``(reason,
client)`` keys), and each example names its client in ``meta["client"]``, so the data card
shows who taught what.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from adaptune.dataset.gate import answer_reject_reason, reject_reason
from adaptune.dataset.scrub import scrub
from adaptune.dataset.tasks import ANSWER_CHARS, question_text
from adaptune.dataset.taught import NO_CLIENT, SOURCE
from adaptune.store import Store, schema
from adaptune.types import Example, Issue

log = logging.getLogger(__name__)


def feedback_examples(store: Store, domain: str, rejected: Counter | None = None) -> list[Example]:
    """The qa examples that the feedback on ``domain``'s tickets teaches, oldest first.

    Feedback whose ticket or answer fails the quality gate is left out and counted in
    ``rejected`` under ``(reason, client)``: ``question_empty``, ``question_noise``,
    ``answer_empty``, ``answer_noise`` or ``answer_language``.
    """
    rejected = Counter() if rejected is None else rejected
    with store.begin() as conn:
        rows = latest_feedback(conn, domain)
    out = []
    for row in rows:
        ex = feedback_example(domain, row)
        if ex is None:
            continue
        reason = gate_reason(domain, row, ex.answer)
        if reason:
            rejected[(reason, ex.meta["client"])] += 1
        else:
            out.append(ex)
    if out or rejected:
        log.info(
            "%s: %d qa examples from feedback, %d rejected",
            domain,
            len(out),
            sum(rejected.values()),
        )
    return sorted(out, key=lambda e: (e.known_at, e.id))


def gate_reason(domain: str, row: Mapping[str, Any], answer: str) -> str | None:
    """Why one ticket's feedback may not teach ``answer`` (its scrubbed answer), or ``None``."""
    reason = reject_reason(_as_issue(domain, row))
    if reason:
        return f"question_{reason}"
    reason = answer_reject_reason(answer)
    return f"answer_{reason}" if reason else None


def latest_feedback(conn: Connection, domain: str) -> list[dict[str, Any]]:
    """Each ticket of ``domain`` with its latest feedback row, joined (one dict per ticket).

    A ticket holds one row per client (a client's later post replaces its own row) and may hold
    rows of several clients: the latest of them decides, whoever sent it, as in the win rates.
    One ticket is one question, so it teaches one answer, attributed to that row's client.
    """
    t, f = schema.tickets, schema.feedback
    query = (
        select(
            f.c.id,
            f.c.ticket_id,
            f.c.rating,
            f.c.corrected_answer,
            f.c.resolved,
            f.c.adapter_version,
            f.c.arm,
            f.c.created_at,
            f.c.client,
            t.c.title,
            t.c.body,
            t.c.labels,
            t.c.answer,
            t.c.created_at.label("ticket_created_at"),
        )
        .join(t, t.c.id == f.c.ticket_id)
        .where(f.c.domain == domain)
        .order_by(f.c.created_at, f.c.id)
    )
    latest: dict[str, dict[str, Any]] = {}
    for row in conn.execute(query).mappings():
        latest[row["ticket_id"]] = dict(row)  # later rows replace earlier ones
    return list(latest.values())


def feedback_example(domain: str, row: Mapping[str, Any]) -> Example | None:
    """The example one ticket's latest feedback makes, or ``None`` when it teaches nothing."""
    kind, text = _taught(row)
    if kind is None:
        return None
    answer = scrub(text[:ANSWER_CHARS].strip())
    if not answer:
        return None
    ticket_id = str(row["ticket_id"])
    created: datetime = row["ticket_created_at"]
    question, facts = question_text(_as_issue(domain, row))
    return Example(
        id=f"qa:feedback:{ticket_id}",
        task="qa",
        domain=domain,
        issue=f"feedback:{ticket_id}",
        question=question,
        answer=answer,
        known_at=row["created_at"],
        solution_source=SOURCE,
        signature=facts["signature"],
        meta={
            **facts,
            "title": scrub(row["title"]),
            "url": None,
            "labels": _labels(row.get("labels")),
            "solution_ref": f"feedback:{row['id']}",
            "solution_url": None,
            "created_at": created.isoformat(),
            "ticket_id": ticket_id,
            "feedback": kind,
            "rating": row["rating"],
            "adapter_version": row.get("adapter_version"),
            "arm": row.get("arm"),
            "client": row.get("client") or NO_CLIENT,
        },
    )


def _taught(row: Mapping[str, Any]) -> tuple[str | None, str]:
    """``("corrected", text)``, ``("accepted", text)`` or ``(None, "")``."""
    corrected = (row.get("corrected_answer") or "").strip()
    if corrected:
        return "corrected", corrected
    if row.get("resolved") and row.get("rating") == "up":
        served = _answer_text(row.get("answer"))
        if served:
            return "accepted", served
    return None, ""


def _answer_text(raw: str | None) -> str:
    """The ``text`` of a ticket's answer JSON ('' when there is none or it is unreadable)."""
    if not raw:
        return ""
    try:
        data = json.loads(raw)
    except (TypeError, ValueError):
        log.warning("a ticket's answer is not JSON; its acceptance is not used")
        return ""
    text = data.get("text") if isinstance(data, dict) else None
    return text.strip() if isinstance(text, str) else ""


def _labels(raw: str | None) -> list[str]:
    try:
        labels: Iterable[Any] = json.loads(raw or "[]")
    except (TypeError, ValueError):
        return []
    return [str(label) for label in labels] if isinstance(labels, list) else []


def _as_issue(domain: str, row: Mapping[str, Any]) -> Issue:
    """The ticket in the shape the question builder reads (title and body)."""
    created: datetime = row["ticket_created_at"]
    return Issue(
        source="ticket",
        repo=domain,
        number=0,
        title=str(row["title"] or ""),
        body=row.get("body"),
        state="closed",
        created_at=created,
        updated_at=row["created_at"],
    )


__all__ = [
    "feedback_example",
    "feedback_examples",
    "gate_reason",
    "latest_feedback",
]
