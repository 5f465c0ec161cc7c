"""The quality gate: which issues may become examples, and why the others may not.

Every rejection has a reason, counted in the data card: ``bot`` (automation accounts),
``stale`` (closed by a stale bot as not planned), ``empty`` (no real text), ``noise`` (tests,
spam, placeholders), ``no_solution`` (a qa question nobody answered), ``duplicate`` (a near copy
of an earlier question) and ``heldout_leak`` (a held-out question with a near copy in training).

Feedback from the service passes the same gate: its ticket as a question (:func:`reject_reason`)
and its corrected or accepted answer as an answer (:func:`answer_reject_reason`: ``empty``,
``noise``, ``language``), so a fuzzer's ``"0"`` on a ticket titled ``"1"`` teaches nothing.
"""

from __future__ import annotations

import re

from adaptune.types import Issue

BOT_LOGINS = frozenset(
    {
        "github-actions",
        "dependabot",
        "dependabot-preview",
        "renovate",
        "renovate-bot",
        "stale",
        "codecov",
        "codecov-io",
        "pre-commit-ci",
        "allcontributors",
        "mergify",
        "huggingface-hub",
        "hf-internal-testing",
    }
)
_WORD = re.compile(r"[A-Za-z]{2,}")
_NOISE_TITLES = re.compile(
    r"^\s*(test|testing|asdf+|hello|hi|title|issue|bug|help|untitled|\.+|-+)\s*[.!?]*\s*$",
    re.IGNORECASE,
)
MIN_WORDS = 8
"""An issue needs at least this many words in title + body to teach anything."""
MIN_ANSWER_WORDS = 4
"""An answer needs at least this many words, and as many different ones (as a solution does)."""
MIN_WORD_SHARE = 0.5
"""Share of an answer's whitespace-separated pieces that must hold a word: below it, the text is
numbers, symbols or a script the gate cannot read, not language to learn."""


def is_bot(login: str | None) -> bool:
    """True for GitHub App accounts (``name[bot]``) and well-known automation."""
    if not login:
        return False
    name = login.lower()
    return name.endswith("[bot]") or name.endswith("-bot") or name in BOT_LOGINS


def is_stale_close(issue: Issue) -> bool:
    """Closed by staleness: a ``stale`` label and closed as not planned (or with no reason)."""
    labels = {lab.lower() for lab in issue.labels}
    if "stale" not in labels or issue.state != "closed":
        return False
    return issue.state_reason in (None, "not_planned")


def reject_reason(issue: Issue) -> str | None:
    """Why ``issue`` cannot be a question at all, or ``None`` when it passes."""
    if is_bot(issue.author):
        return "bot"
    if is_stale_close(issue):
        return "stale"
    text = f"{issue.title} {issue.body or ''}"
    if len(_WORD.findall(text)) < MIN_WORDS:
        return "empty"
    if _NOISE_TITLES.match(issue.title) and len(_WORD.findall(issue.body or "")) < 2 * MIN_WORDS:
        return "noise"
    return None


def answer_reject_reason(text: str) -> str | None:
    """Why ``text`` cannot be an answer (``empty``, ``noise``, ``language``), or ``None``.

    ``empty``: fewer than :data:`MIN_ANSWER_WORDS` words (``"0"``, ``"null"``, ``"x"``);
    ``noise``: fewer different words than that (``"fixed fixed fixed fixed"``); ``language``:
    less than :data:`MIN_WORD_SHARE` of its pieces hold a word (``"1 2 3 … a b c"``).
    """
    words = _WORD.findall(text)
    if len(words) < MIN_ANSWER_WORDS:
        return "empty"
    if len({w.lower() for w in words}) < MIN_ANSWER_WORDS:
        return "noise"
    pieces = text.split()
    if sum(1 for p in pieces if _WORD.search(p)) < MIN_WORD_SHARE * len(pieces):
        return "language"
    return None
