"""Shared value types that every pipeline stage imports.

No stage imports another stage's internals; they exchange these frozen dataclasses instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

SourceKind = Literal["github", "jira"]


@dataclass(frozen=True, slots=True)
class Issue:
    """One issue or pull request from a tracker, normalised across sources.

    Identity is ``(source, repo, number)``: ``repo`` is ``owner/name`` on GitHub and the project
    key on Jira (``number`` is then the numeric part of ``PROJ-123``).
    """

    source: str
    """Tracker kind: ``github`` or ``jira``."""
    repo: str
    """``owner/name`` on GitHub, the project key (``PROJ``) on Jira."""
    number: int
    """Issue number; for Jira the numeric part of the key."""
    title: str
    """One-line summary."""
    body: str | None
    """Description text (Markdown on GitHub, plain text converted from ADF on Jira)."""
    state: str
    """``open`` or ``closed``."""
    created_at: datetime
    """When it was filed (UTC)."""
    updated_at: datetime
    """When it last changed (UTC); decides which of two versions of a row wins."""
    closed_at: datetime | None = None
    """When it was closed or resolved (UTC), if it was."""
    key: str | None = None
    """Human key: ``PROJ-123`` on Jira, ``None`` on GitHub."""
    is_pull_request: bool = False
    """True for GitHub pull requests (the issues API returns both)."""
    merged_at: datetime | None = None
    """For pull requests: when they were merged (``None`` when closed unmerged)."""
    state_reason: str | None = None
    """GitHub's ``completed`` / ``not_planned`` / ``reopened``; Jira's resolution name."""
    labels: tuple[str, ...] = ()
    """Label names (Jira labels and components are both included)."""
    author: str | None = None
    """Login or display name of the reporter."""
    author_association: str | None = None
    """GitHub's ``OWNER`` / ``MEMBER`` / ``CONTRIBUTOR`` / ``NONE`` …"""
    closed_by: str | None = None
    """Login of whoever closed it, when known."""
    comments_count: int = 0
    """Number of comments the tracker reports (the text may not be stored)."""
    url: str | None = None
    """Web address of the issue."""
    issue_type: str | None = None
    """Jira issue type (Bug, Task …); ``None`` on GitHub."""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    """The object exactly as the source returned it."""


@dataclass(frozen=True, slots=True)
class Comment:
    """One comment on an issue, stored in its own table."""

    source: str
    """Tracker kind, as on :class:`Issue`."""
    repo: str
    """Repository or project, as on :class:`Issue`."""
    issue_number: int
    """The issue this comment belongs to."""
    comment_id: str
    """The tracker's id of the comment (GitHub numeric id, gh node id, Jira id)."""
    body: str | None
    """Comment text."""
    created_at: datetime
    """When it was written (UTC)."""
    updated_at: datetime
    """When it was last edited (UTC)."""
    author: str | None = None
    """Login or display name."""
    author_association: str | None = None
    """GitHub's association of the author with the repository."""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    """The object exactly as the source returned it."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """An input row that could not be turned into an :class:`Issue`."""

    where: str
    """Where it was found: ``FILE:LINE`` or a URL."""
    reason: str
    """Why, in words a user can act on."""


@dataclass(slots=True)
class IngestReport:
    """What one ingest run did. Counts are of rows, issues and PRs together."""

    source: str
    """What was ingested (a path, ``github:owner/repo`` …)."""
    seen: int = 0
    """Rows read from the source."""
    inserted: int = 0
    """Rows that were new."""
    updated: int = 0
    """Rows that replaced an older version."""
    unchanged: int = 0
    """Rows already stored with the same or a newer ``updated_at``."""
    comments: int = 0
    """Comments inserted or updated."""
    rejected: list[Rejection] = field(default_factory=list)
    """Rows that could not be read, with the reason."""
    not_modified: bool = False
    """True when the source answered 304 Not Modified (nothing to do)."""
    repos: set[tuple[str, str]] = field(default_factory=set)
    """``(source, repo)`` pairs touched."""

    def add(self, other: IngestReport) -> None:
        """Fold another report's counts into this one."""
        self.seen += other.seen
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.comments += other.comments
        self.rejected.extend(other.rejected)
        self.repos |= other.repos
        self.not_modified = self.not_modified and other.not_modified


@dataclass(frozen=True, slots=True)
class Domain:
    """A named group of sources (by default one repo or one Jira project)."""

    name: str
    """Short name used on the command line (``vllm``)."""
    sources: tuple[str, ...]
    """Members as ``source:repo`` strings (``github:vllm-project/vllm``, ``jira:PROJ``)."""


@dataclass(frozen=True, slots=True)
class Example:
    """One training or evaluation example, built from a stored issue by a task builder."""

    id: str
    """Stable id: ``{task}:{source}:{repo}#{number}`` (plus a suffix for pair tasks)."""
    task: str
    """``qa``, ``triage`` or ``duplicates``."""
    domain: str
    """The domain whose build this example belongs to."""
    issue: str
    """The issue it came from: ``{source}:{repo}#{number}``."""
    question: str
    """Model input: title, cleaned body, environment summary (scrubbed)."""
    answer: str
    """Target: the solution (qa), the type label (triage), the canonical issue (duplicates)."""
    known_at: datetime
    """When the answer became known (fix merged, issue closed); orders the windows."""
    window: str = ""
    """Window name (``2021Q3``, ``2021-07`` or ``w003``), set by the windowing step."""
    split: str = ""
    """``train`` or ``heldout``, set by the windowing step."""
    solution_source: str | None = None
    """Where the answer came from: ``pr``, ``maintainer_comment`` or ``feedback``."""
    signature: str | None = None
    """Error signature of the question's failure, when it has one."""
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    """Provenance and parsed facts (fix ref and URL, models, versions, labels …)."""
