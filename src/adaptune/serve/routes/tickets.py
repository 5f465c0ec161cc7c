"""``/v1/tickets``: answer a ticket, read it back, rate its answer."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from adaptune.feedback import record
from adaptune.serve.auth import rate_limited, require
from adaptune.serve.public import public
from adaptune.serve.schemas import FeedbackIn, FeedbackOut, Problem, TicketIn, TicketOut
from adaptune.serve.tickets import answer, fetch

router = APIRouter(prefix="/v1/tickets", tags=["tickets"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem},
    403: {"model": Problem},
    404: {"model": Problem},
    409: {"model": Problem},
    413: {"model": Problem},
    422: {"model": Problem},
    429: {"model": Problem},
    503: {"model": Problem},
}


TICKET_LINKS = {
    "GetTicket": {
        "operationId": "get_ticket",
        "parameters": {"ticket_id": "$response.body#/id"},
        "description": "The stored ticket, with its feedback.",
    },
    "PostFeedback": {
        "operationId": "post_feedback",
        "parameters": {"ticket_id": "$response.body#/id"},
        "description": "Rate the ticket's answer.",
    },
}
"""OpenAPI links from a new ticket to the operations on it (stateful clients and fuzzers)."""


@router.post(
    "",
    response_model=TicketOut,
    operation_id="post_ticket",
    responses={**ERRORS, 200: {"description": "The stored ticket.", "links": TICKET_LINKS}},
    dependencies=[Depends(require("write")), Depends(rate_limited)],
)
async def post_ticket(ticket: TicketIn, request: Request) -> dict[str, Any]:
    """Triage a ticket, find similar and duplicate issues, and (unless ``generate`` is false)
    answer it with the domain's production adapter or its A/B candidate."""
    state = request.app.state.service
    client = getattr(request.state, "client_id", None)
    return public(await run_in_threadpool(answer, state, ticket, client))


@router.get(
    "/{ticket_id}",
    response_model=TicketOut,
    operation_id="get_ticket",
    responses=ERRORS,
    dependencies=[Depends(require("read"))],
)
async def get_ticket(ticket_id: str, request: Request) -> dict[str, Any]:
    """A stored ticket with its answer and feedback."""
    return public(await run_in_threadpool(fetch, request.app.state.service, ticket_id))


@router.post(
    "/{ticket_id}/feedback",
    response_model=FeedbackOut,
    operation_id="post_feedback",
    status_code=201,
    responses=ERRORS,
    dependencies=[Depends(require("write")), Depends(rate_limited)],
)
async def post_feedback(ticket_id: str, feedback: FeedbackIn, request: Request) -> dict[str, Any]:
    """Rate a ticket's answer (``up``/``down``), maybe with a corrected answer or ``resolved``;
    attributed to the adapter version and A/B arm that answered. One feedback per ticket and
    token: a later post from the same token replaces the earlier one."""
    store = request.app.state.service.store
    client = getattr(request.state, "client_id", None)
    stored = await run_in_threadpool(
        partial(
            record,
            store,
            ticket_id,
            feedback.rating,
            feedback.corrected_answer,
            feedback.resolved,
            client=client,
        )
    )
    return public(stored)
