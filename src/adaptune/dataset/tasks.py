"""Task builders: stored issues → scrubbed :class:`Example` rows for qa, triage and duplicates.

Every text that leaves the raw store goes through :func:`scrub` here, so no secret or e-mail
address from an issue reaches a dataset file, a model or a report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from adaptune.dataset.parse.environment import parse_environment, summary
from adaptune.dataset.parse.links import duplicate_of
from adaptune.dataset.parse.models import find_models
from adaptune.dataset.parse.sections import clean_body
from adaptune.dataset.parse.traceback import cut_log, error_signature
from adaptune.dataset.scrub import scrub
from adaptune.dataset.solutions import Solution
from adaptune.types import Comment, Example, Issue

QUESTION_CHARS = 4000
"""Longest question body; longer logs keep head, the traceback and tail."""
ANSWER_CHARS = 3000


def issue_ref(issue: Issue) -> str:
    """``source:repo#number``: how examples name their issue."""
    return f"{issue.source}:{issue.repo}#{issue.number}"


def question_text(issue: Issue, max_chars: int = QUESTION_CHARS) -> tuple[str, dict]:
    """The scrubbed model input for an issue, and the facts parsed from it."""
    body = issue.body or ""
    cleaned = cut_log(clean_body(body), max_chars)
    env = parse_environment(body)
    env_line = summary(env)
    parts = [f"Title: {issue.title.strip()}", cleaned]
    if env_line:
        parts.append(f"Environment: {env_line}")
    signature = error_signature(body)
    facts = {
        "signature": scrub(signature) if signature else None,
        "models": [scrub(m) for m in find_models(f"{issue.title}\n{body}")],
        "environment": scrub(env_line) if env_line else None,
    }
    return scrub("\n\n".join(p for p in parts if p)), facts


def qa_example(domain: str, issue: Issue, solution: Solution) -> Example:
    """A question → answer pair from a solved issue."""
    question, facts = question_text(issue)
    answer = scrub(solution.text[:ANSWER_CHARS].strip())
    return Example(
        id=f"qa:{issue_ref(issue)}",
        task="qa",
        domain=domain,
        issue=issue_ref(issue),
        question=question,
        answer=answer,
        known_at=max(solution.known_at, issue.created_at),
        solution_source=solution.source,
        signature=facts["signature"],
        meta={
            **facts,
            "title": scrub(issue.title),
            "url": issue.url,
            "labels": list(issue.labels),
            "solution_ref": solution.ref,
            "solution_url": solution.url,
            "created_at": issue.created_at.isoformat(),
        },
    )


def triage_example(domain: str, issue: Issue, label: str) -> Example:
    """An issue → type-label example (known when the issue was filed)."""
    question, facts = question_text(issue, max_chars=2000)
    return Example(
        id=f"triage:{issue_ref(issue)}",
        task="triage",
        domain=domain,
        issue=issue_ref(issue),
        question=question,
        answer=label,
        known_at=issue.created_at,
        signature=facts["signature"],
        meta={"labels": list(issue.labels), "title": scrub(issue.title), "url": issue.url},
    )


def find_duplicate_pairs(
    issues: Sequence[Issue],
    by_number: Mapping[tuple[str, int], Issue],
    comments: Mapping[tuple[str, int], Sequence[Comment]],
) -> list[tuple[Issue, Issue]]:
    """(issue, canonical) from ``Duplicate of #N`` in the body or in a comment."""
    out = []
    for issue in issues:
        texts = [issue.body or ""] + [
            c.body or "" for c in comments.get((issue.repo, issue.number), ())
        ]
        for text in texts:
            ref = duplicate_of(text, issue.repo) if "uplicate" in text else None
            target = by_number.get((ref.repo, ref.number)) if ref else None
            if target is not None and target.number != issue.number:
                out.append((issue, target))
                break
    return out


def duplicate_examples(
    domain: str, pairs: Sequence[tuple[Issue, Issue]], negatives: Mapping[str, list[str]]
) -> list[Example]:
    """Examples for (issue, canonical issue) pairs, each with its hard negatives."""
    out = []
    for issue, target in pairs:
        question, facts = question_text(issue, max_chars=2000)
        hard = [n for n in negatives.get(issue_ref(issue), []) if n != issue_ref(target)]
        out.append(
            Example(
                id=f"duplicates:{issue_ref(issue)}",
                task="duplicates",
                domain=domain,
                issue=issue_ref(issue),
                question=question,
                answer=scrub(f"#{target.number} {target.title}"),
                known_at=issue.closed_at or issue.updated_at,
                signature=facts["signature"],
                meta={"canonical": issue_ref(target), "negatives": hard[:5]},
            )
        )
    return out
