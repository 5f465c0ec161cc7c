"""Issue bodies as sections: split issue-form bodies by heading, and strip template boilerplate.

GitHub issue forms render every field as a ``### Heading`` followed by the answer, so a body
becomes a mapping from a normalised heading (``"🐛 Describe the bug"`` → ``"describe the bug"``)
to its text. Headings inside code fences are log output, not structure, and are left alone.
:func:`clean_body` keeps the author's words and drops what the template put there: HTML
comments, the vLLM "Before submitting" checklist, ``_No response_`` answers, unfilled
placeholders and the stock checklist items of the templates.
"""

from __future__ import annotations

import re

_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_HEADING = re.compile(r"^ {0,3}(#{1,3})[ \t]+(\S.*?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_BLANK_RUNS = re.compile(r"\n{3,}")
_NO_RESPONSE = re.compile(r"^\s*_No response_\s*$", re.IGNORECASE)
_PLACEHOLDER_LINE = re.compile(
    r"^\s*(?:Your output of `python collect_env\.py` here|<details>|</details>"
    r"|<summary>.*</summary>|```\w*)\s*$",
    re.IGNORECASE,
)
_CHECKBOX = re.compile(r"^\s*[-*+] \[([ xX])\] (.*)$")
_TEMPLATE_ITEMS = re.compile(
    r"^\W*(?:Make sure you already searched|I am running the latest code|I carefully followed"
    r"|I searched using keywords|I \[searched using keywords|I reviewed the \[?Discussions"
    r"|I have searched|Create the dataset script|Fill the `_DESCRIPTION`|Implement `_info"
    r"|Make sure that the `BUILDER_CONFIGS`|Generate the metadata file|Generate the dummy data"
    r"|Add the dataset card|Both tests for the real data)",
    re.IGNORECASE,
)
_TEMPLATE_LINE = re.compile(
    r"^\s*(?:Please answer the following questions for yourself before submitting an issue\."
    r"|Instructions to add a new dataset can be found \[here\])",
    re.IGNORECASE,
)
BOILERPLATE_SECTIONS = frozenset({"before submitting a new issue", "prerequisites"})
"""Normalised headings that only templates write: the heading goes, any words of the author stay."""
PREAMBLE = "body"
"""Key for text before the first heading, or for a whole body that has no headings."""

Block = tuple[str | None, int, list[str]]
"""A heading line (``None`` for the preamble), its level (0 for the preamble) and its lines."""


def strip_html_comments(text: str | None) -> str:
    """``text`` without ``<!-- … -->`` comments (an unterminated ``<!--`` is left as it is)."""
    if not text:
        return ""
    return _COMMENT.sub("", text)


def heading_key(title: str) -> str:
    """Normalise a heading: lower case, no emoji or punctuation, single spaces."""
    lowered = title.lower().replace("'", "").replace("’", "")
    return " ".join(re.sub(r"[^\w\s]|_", " ", lowered).split())


def _fence_toggles(line: str) -> bool:
    """Whether ``line`` opens or closes a code fence (```` ```x ``` ```` on one line is inline)."""
    match = _FENCE.match(line)
    if not match:
        return False
    rest = line[match.end() :]
    return match.group(1)[0] not in rest


def _blocks(text: str) -> list[Block]:
    """Split ``text`` at level 1–3 headings that are outside code fences."""
    blocks: list[Block] = [(None, 0, [])]
    in_fence = False
    for line in text.split("\n"):
        if _fence_toggles(line):
            in_fence = not in_fence
        heading = None if in_fence else _HEADING.match(line)
        if heading:
            blocks.append((line.strip(), len(heading.group(1)), []))
        else:
            blocks[-1][2].append(line)
    return blocks


def _title(heading_line: str) -> str:
    """The words of a heading line, without its ``#`` marks."""
    match = _HEADING.match(heading_line)
    return match.group(2) if match else heading_line


def split_sections(body: str | None) -> dict[str, str]:
    """Map each normalised ``### Heading`` to its text; no headings → ``{"body": text}``.

    Text before the first heading goes under ``"body"`` as well, repeated headings are joined
    with a blank line, and a ``_No response_`` answer becomes an empty string.
    """
    text = strip_html_comments(body).replace("\r\n", "\n").replace("\r", "\n")
    sections: dict[str, str] = {}
    for heading, _level, lines in _blocks(text):
        key = PREAMBLE if heading is None else heading_key(_title(heading)) or "untitled"
        value = "\n".join(line for line in lines if not _NO_RESPONSE.match(line)).strip()
        if heading is None and not value:
            continue
        sections[key] = f"{sections[key]}\n\n{value}".strip() if key in sections else value
    return sections


def _keep_line(line: str) -> bool:
    """False for template filler: ``_No response_``, stock sentences and checklist items."""
    if _NO_RESPONSE.match(line) or _TEMPLATE_LINE.match(line):
        return False
    checkbox = _CHECKBOX.match(line)
    return not (checkbox and _TEMPLATE_ITEMS.match(checkbox.group(2)))


def _is_filler(lines: list[str]) -> bool:
    """True when nothing but placeholders and blank lines is left in a section."""
    return all(not line.strip() or _PLACEHOLDER_LINE.match(line) for line in lines)


def _clean_block(block: Block) -> list[str]:
    """The lines of ``block`` to keep (none at all for a boilerplate or empty form section)."""
    heading, level, lines = block
    if heading is not None and heading_key(_title(heading)) in BOILERPLATE_SECTIONS:
        heading, level = None, 0
    kept = [line.rstrip() for line in lines if _keep_line(line)]
    # An empty form answer goes; a bare "## Title" right above a sub-heading stays.
    if _is_filler(kept) and (heading is None or level == 3 or any(s.strip() for s in lines)):
        return []
    return ([heading] if heading is not None else []) + kept


def clean_body(body: str | None) -> str:
    """The body as the author wrote it, without comments, template filler and blank-line runs."""
    text = strip_html_comments(body).replace("\r\n", "\n").replace("\r", "\n")
    lines: list[str] = []
    for block in _blocks(text):
        kept = _clean_block(block)
        if kept:
            lines.extend([*kept, ""])
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()
