"""qa examples the build is given from outside the issues: the feedback on served answers.

:mod:`adaptune.feedback.examples` makes them (corrections and accepted answers, each through the
quality gate); the build then drops the near copies (:func:`dedupe_feedback`) and the data card
counts what they taught and what was refused, per client (:func:`~adaptune.dataset.card.manifest`).
This module is the contract between the two: the examples' ``solution_source`` and the name of
a missing client.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from adaptune.dataset.dedupe import has_near_copy, near_duplicate_groups
from adaptune.types import Example

SOURCE = "feedback"
"""The ``solution_source`` of every example feedback teaches."""
NO_CLIENT = "none"
"""How the data card names the client of feedback stored without one (CLI, before 0004)."""


def dedupe_feedback(
    examples: Sequence[Example], issue_questions: Sequence[str], rejected: Counter
) -> list[Example]:
    """Feedback examples without near copies, the earliest copy kept; drops counted by client.

    ``duplicate_question``: the ticket nearly copies an issue's question (the issue's answer
    stays) or an earlier ticket's. ``duplicate_answer``: the answer nearly copies one that an
    earlier ticket's feedback already teaches, so one answer posted on many tickets teaches
    once.
    """
    ordered = sorted(examples, key=lambda e: (e.known_at, e.id))
    if not ordered:
        return []
    copies = (
        has_near_copy([e.question for e in ordered], issue_questions)
        if issue_questions
        else [False] * len(ordered)
    )
    by_question = near_duplicate_groups([e.question for e in ordered])
    by_answer = near_duplicate_groups([e.answer for e in ordered])
    kept = []
    for i, ex in enumerate(ordered):
        if copies[i] or by_question[i] != i:
            rejected[("duplicate_question", ex.meta["client"])] += 1
        elif by_answer[i] != i:
            rejected[("duplicate_answer", ex.meta["client"])] += 1
        else:
            kept.append(ex)
    return kept


__all__ = ["NO_CLIENT", "SOURCE", "dedupe_feedback"]
