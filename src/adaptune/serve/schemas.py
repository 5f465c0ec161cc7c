"""Request and response bodies of the HTTP API (they make the OpenAPI schema).

Request bodies are strict: ``0`` is not ``false``, ``"3"`` is not ``3``, ``NaN`` and
``Infinity`` are not numbers, unknown fields are refused; each is a 422 naming the field.
"""

from __future__ import annotations

from typing import Any, Literal, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, create_model

from adaptune.jobs.queue import JobView


class TicketIn(BaseModel):
    """A ticket to answer."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    title: str = Field(min_length=1, max_length=1_000, description="The ticket's title.")
    body: str = Field("", max_length=200_000, description="The ticket's text (markdown).")
    domain: str | None = Field(
        None, max_length=100, description="Domain to answer in; optional with one domain."
    )
    repo: str | None = Field(
        None,
        max_length=200,
        description="Repository (owner/name) or Jira project key; routes to its domain.",
    )
    labels: list[str] = Field(default_factory=list, max_length=50)
    generate: bool = Field(True, description="false: triage and similar issues only, no model.")
    max_new_tokens: int | None = Field(None, ge=1, le=2048)


class Triage(BaseModel):
    """The predicted type label and every label's probability."""

    label: str
    scores: dict[str, float]


class Similar(BaseModel):
    """A similar stored issue."""

    number: int
    title: str
    url: str | None
    score: float
    state: str
    solution: str | None


class AnswerOut(BaseModel):
    """A generated answer and who generated it."""

    text: str
    adapter_version: str | None
    arm: str
    latency_ms: float


class TicketOut(BaseModel):
    """What adaptune made of a ticket."""

    id: str
    domain: str
    triage: Triage | None
    similar: list[Similar]
    duplicate_of: int | None
    answer: AnswerOut | None
    answer_error: str | None = Field(
        None, description="Why no answer (or a fallback answer) was generated, when so."
    )
    created_at: str
    feedback: list[dict[str, Any]] = Field(default_factory=list)


class FeedbackIn(BaseModel):
    """A rating of a ticket's answer."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    rating: Literal["up", "down"]
    corrected_answer: str | None = Field(None, min_length=1, max_length=20_000)
    resolved: bool | None = None


class FeedbackOut(BaseModel):
    """Stored feedback."""

    id: int
    ticket_id: str
    domain: str
    rating: str
    corrected_answer: str | None
    resolved: bool | None
    adapter_version: str | None
    arm: str | None
    created_at: str


class TrainJobIn(BaseModel):
    """A training job to queue."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    domain: str | None = Field(None, max_length=100)
    max_steps: int | None = Field(None, ge=1, le=100_000)
    epochs: float | None = Field(None, gt=0, le=100)
    model: str | None = Field(None, max_length=500)
    tolerance: float | None = Field(None, ge=-1, le=1)
    promote: bool | None = Field(
        None, description="false: a passing gate leaves the version candidate for you to promote"
    )


def _model_of(view: type) -> type[BaseModel]:
    """A model with the fields of the TypedDict ``view``: same names, types and order, all
    required, so the response model cannot drift from the data it validates."""
    fields: dict[str, Any] = {name: (tp, ...) for name, tp in get_type_hints(view).items()}
    return create_model(f"_{view.__name__}", **fields)


class JobOut(_model_of(JobView)):  # type: ignore[misc]
    """A job of the queue."""


class RollbackIn(BaseModel):
    """Which domain to roll back."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    domain: str | None = Field(None, max_length=100)


class Problem(BaseModel):
    """An error: what went wrong and what to do."""

    detail: Any
