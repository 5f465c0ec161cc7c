"""Links between issues: which issues a pull request fixes, and which issue one duplicates.

GitHub closes an issue when a merged pull request says ``Fixes #12`` (or ``close``/``resolve``
in any tense, any case, with an optional colon). The reference may be ``#12``,
``owner/repo#12`` or the issue's full URL, and one keyword may take a list: ``Fixes #1, #2 and
#3``. Text inside code (inline backticks or fences) is still read: people do write
``fixes #12`` in backticks, and a false link costs less than a lost one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NUMBER = r"(?P<n>\d{1,9})(?!\d)"
_REF = (
    r"\(?(?:\[[^\]\n]{0,80}\]\()?"
    r"(?:https?://(?:www\.)?github\.com/(?P<url_repo>[\w.-]+/[\w.-]+)/issues/(?P<url_n>\d{1,9})"
    r"(?![\d/])|(?P<repo>[\w.-]+/[\w.-]+)?#" + _NUMBER + r")\)?"
)
_KEYWORD = r"\b(?:fix(?:e[sd])?|close[sd]?|resolve[sd]?)\b"
_SEPARATOR = r"(?:\s*(?:,|;|&|\band\b|\bor\b)\s*|\s+)"
_ONE_REF = re.compile(_REF)
_ANY_REF = re.sub(r"\(\?P<\w+>", "(?:", _REF)
_FIXES = re.compile(
    rf"{_KEYWORD}\s*:?\s*(?:(?:the\s+)?issues?\s*:?\s*)?{_ANY_REF}(?:{_SEPARATOR}{_ANY_REF})*",
    re.IGNORECASE,
)
_DUPLICATE = re.compile(rf"\bduplicate\s+of\s*:?\s*(?:issue\s+)?{_REF}", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class IssueRef:
    """An issue by repository and number."""

    repo: str
    """``owner/name``."""
    number: int
    """Issue number within the repository."""


def _ref(match: re.Match[str], repo: str) -> IssueRef:
    """The issue a reference names; a repo equal to ``repo`` but for case is written as ``repo``."""
    named = match.group("url_repo") or match.group("repo") or repo
    number = int(match.group("url_n") or match.group("n"))
    return IssueRef(repo if named.lower() == repo.lower() else named, number)


def fixed_issues(text: str | None, repo: str) -> tuple[IssueRef, ...]:
    """The issues that ``text`` (a pull request's title and body) says it fixes, closes or resolves.

    ``#N`` refers to ``repo``; ``owner/name#N`` and full issue URLs may point elsewhere.
    Each issue appears once, in the order it is first named.
    """
    found: dict[IssueRef, None] = {}
    for clause in _FIXES.finditer(text or ""):
        for ref in _ONE_REF.finditer(clause.group(0)):
            found.setdefault(_ref(ref, repo), None)
    return tuple(found)


def duplicate_of(text: str | None, repo: str) -> IssueRef | None:
    """The issue that ``text`` marks this one a duplicate of (``Duplicate of #N``), if any."""
    match = _DUPLICATE.search(text or "")
    return _ref(match, repo) if match else None
