"""Feedback on served answers: stored per ticket, attributed to the adapter and A/B arm.

:func:`record` stores a rating (and maybe a corrected answer or an accepted resolution), one
row per ticket and client: a client's later post on a ticket replaces its earlier one, so no
token can multiply its say on a ticket by posting again;
:func:`win_rates` turns the ratings into per-arm win rates with Wilson 95 % intervals and the
candidate-minus-production difference with Newcombe's interval, for ``GET /v1/stats`` and the
dashboard. :mod:`adaptune.feedback.examples` turns corrections and accepted answers into
training examples, which the dataset build is given (:func:`adaptune.pipeline.build_dataset`).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.exc import IntegrityError

from adaptune.errors import AdaptuneError
from adaptune.store import Store, schema

Z95 = 1.959964


class FeedbackError(AdaptuneError):
    """Feedback that cannot be stored (unknown ticket)."""


def record(
    store: Store,
    ticket_id: str,
    rating: str,
    corrected_answer: str | None = None,
    resolved: bool | None = None,
    *,
    client: str | None = None,
) -> dict[str, Any]:
    """Store feedback on a ticket's answer; returns the stored row as JSON-ready data.

    ``client`` is who sent it (``token:<name>``). A client has one row per ticket: a later post
    replaces the earlier row (deleted and inserted anew, so the new row has the highest id and
    counts as the ticket's latest feedback, for the win rates as for the dataset). Without a
    client (the CLI, rows from before clients were recorded) every post is a row of its own.
    """
    t = schema.tickets
    now = datetime.now(UTC)
    with store.begin() as conn:
        ticket = conn.execute(
            select(t.c.domain, t.c.adapter_version, t.c.arm).where(t.c.id == ticket_id)
        ).first()
        if ticket is None:
            raise FeedbackError(f"No ticket {ticket_id}.")
        row = {
            "ticket_id": ticket_id,
            "domain": ticket.domain,
            "rating": rating,
            "corrected_answer": corrected_answer,
            "resolved": resolved,
            "adapter_version": ticket.adapter_version,
            "arm": ticket.arm,
            "created_at": now,
            "client": client,
        }
        new_id = _replace(conn, row)
    return {**row, "id": new_id, "created_at": now.isoformat()}


def _replace(conn: Connection, row: dict[str, Any]) -> int:
    """Insert ``row`` in place of its client's earlier row on the ticket; the row's id."""
    f = schema.feedback
    if row["client"] is None:
        return int(conn.execute(f.insert().values(**row)).inserted_primary_key[0])
    mine = (f.c.ticket_id == row["ticket_id"]) & (f.c.client == row["client"])
    conn.execute(f.delete().where(mine))
    try:
        with conn.begin_nested():
            return int(conn.execute(f.insert().values(**row)).inserted_primary_key[0])
    except IntegrityError:
        # The same client's concurrent post inserted its row after our delete: the unique
        # index on (ticket, client) refused ours, so ours (the later one) becomes an update.
        if not conn.execute(f.update().where(mine).values(**row)).rowcount:
            raise  # not that race (the ticket went away meanwhile)
        return int(conn.execute(select(f.c.id).where(mine)).scalar_one())


def wilson(successes: int, n: int) -> tuple[float, float]:
    """The Wilson score 95 % interval of a proportion (``(nan, nan)`` when ``n`` is 0)."""
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    denom = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def newcombe(s1: int, n1: int, s2: int, n2: int) -> tuple[float, float, float]:
    """Difference p1 − p2 with Newcombe's hybrid-score 95 % interval: ``(diff, low, high)``."""
    if n1 == 0 or n2 == 0:
        return (math.nan, math.nan, math.nan)
    p1, p2 = s1 / n1, s2 / n2
    l1, u1 = wilson(s1, n1)
    l2, u2 = wilson(s2, n2)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return (d, low, high)


def _nan_to_none(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 4)


def win_rates(store: Store, domain: str | None = None) -> dict[str, Any]:
    """Per domain and arm: ratings, win rate (share of ``up``) with its 95 % interval.

    Only each ticket's latest rating counts, so re-rating a ticket does not count twice.
    """
    f = schema.feedback
    latest = select(func.max(f.c.id)).group_by(f.c.ticket_id)
    query = select(f.c.domain, f.c.arm, f.c.adapter_version, f.c.rating, func.count()).where(
        f.c.id.in_(latest)
    )
    if domain:
        query = query.where(f.c.domain == domain)
    query = query.group_by(f.c.domain, f.c.arm, f.c.adapter_version, f.c.rating)
    counts: dict[str, dict[str, dict[str, Any]]] = {}
    with store.begin() as conn:
        for dom, arm, version, rating, n in conn.execute(query):
            arm_row = counts.setdefault(dom, {}).setdefault(
                arm or "none", {"up": 0, "down": 0, "versions": set()}
            )
            arm_row[rating] = arm_row.get(rating, 0) + int(n)
            if version:
                arm_row["versions"].add(version)
    out: dict[str, Any] = {}
    for dom, arms in sorted(counts.items()):
        table = {}
        for arm, c in sorted(arms.items()):
            n = c["up"] + c["down"]
            low, high = wilson(c["up"], n)
            table[arm] = {
                "up": c["up"],
                "down": c["down"],
                "n": n,
                "win_rate": _nan_to_none(c["up"] / n) if n else None,
                "ci95": [_nan_to_none(low), _nan_to_none(high)],
                "versions": sorted(c["versions"]),
            }
        entry: dict[str, Any] = {"arms": table}
        cand, prod = table.get("candidate"), table.get("production")
        if cand and prod:
            d, low, high = newcombe(cand["up"], cand["n"], prod["up"], prod["n"])
            entry["candidate_minus_production"] = {
                "diff": _nan_to_none(d),
                "ci95": [_nan_to_none(low), _nan_to_none(high)],
            }
        out[dom] = entry
    return out


def ticket_feedback(store: Store, ticket_id: str) -> list[dict[str, Any]]:
    """Every feedback row of a ticket, oldest first."""
    f = schema.feedback
    with store.begin() as conn:
        rows = conn.execute(select(f).where(f.c.ticket_id == ticket_id).order_by(f.c.id)).all()
    return [
        {
            "id": r.id,
            "rating": r.rating,
            "corrected_answer": r.corrected_answer,
            "resolved": r.resolved,
            "adapter_version": r.adapter_version,
            "arm": r.arm,
            "created_at": r.created_at.isoformat(),
        }
        for r in rows
    ]
