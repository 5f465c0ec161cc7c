"""Tracebacks in issue text: find them, name the failure, and cut long logs around them.

:func:`find_tracebacks` reads Python tracebacks (plain, chained, behind a log prefix such as
``(RayWorkerWrapper pid=7)`` or ``[rank0]:``, and IPython's ``---> 12`` style) and the
one-line native crashes of :mod:`~adaptune.dataset.parse.crash`. :func:`error_signature` turns
the failure into a short string that is the same for two issues that fail the same way, and
:func:`cut_log` shortens a huge log while keeping its head, its tracebacks and its tail.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from adaptune.dataset.parse.crash import Frame, Traceback, crash_in_line
from adaptune.dataset.parse.pytrace import Found, python_tracebacks

__all__ = ["Frame", "Traceback", "cut_log", "error_signature", "find_tracebacks"]
__all__ += ["normalise_message"]

_QUOTE = re.compile(r"^(?:> ?)+")


def _found(text: str | None) -> list[Found]:
    """Python tracebacks and crash lines outside them, in order of appearance."""
    text = (text or "").replace("\r\n", "\n").replace("\r", "\n")
    lines = [_QUOTE.sub("", line) if line.startswith(">") else line for line in text.split("\n")]
    found = python_tracebacks(lines)
    covered = {i for start, end, _ in found for i in range(start, end + 1)}
    for i, line in enumerate(lines):
        crash = None if i in covered else crash_in_line(line)
        if crash:
            found.append((i, i, crash))
    return sorted(found, key=lambda f: f[0])


def find_tracebacks(text: str | None) -> list[Traceback]:
    """The distinct tracebacks and crash lines in ``text``, in order of first appearance."""
    seen: dict[Traceback, None] = {}
    for _start, _end, tb in _found(text):
        seen.setdefault(tb, None)
    return list(seen)


def _random_id(match: re.Match[str]) -> str:
    """``<ID>`` for a token-like run (mixed case and digits, no word in it), else the run."""
    run = match.group(0)
    random = any(c.isdigit() for c in run) and run.lower() != run and run.upper() != run
    return "<ID>" if random and not re.search(r"[a-z]{6}", run) else run


_NORMALISERS: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = tuple(
    (re.compile(pattern), placeholder)
    for pattern, placeholder in (
        (r"\b[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\b", "<UUID>"),
        (r"\b(?:https?|s3|gs|hf)://[^\s'\"`<>)\]]+", "<URL>"),
        (r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", "<EMAIL>"),
        (r"torch\.Size\(\[[^\]]*\]\)", "<SHAPE>"),
        (r"\[\s*-?\d+(?:\s*,\s*-?\d+)+\s*,?\s*\]|\(\s*-?\d+(?:\s*,\s*-?\d+)+\s*,?\s*\)", "<SHAPE>"),
        (r"(?:(?<=[\s'\"`(=:])|^)(?:[A-Za-z]:\\|~?/|\.{1,2}/)[^\s'\"`,;:()\[\]{}<>]*", "<PATH>"),
        (r"(?<![\w/.-])[\w.-]+(?:/[\w.-]+){2,}", "<PATH>"),
        (r"\b0x[0-9a-fA-F]+\b", "<HEX>"),
        (r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{12,}\b", "<HASH>"),
        (r"\b[A-Za-z0-9_-]{24,}\b", _random_id),
        (r"(['\"`])(?!<)[^\s'\"`]{1,100}\1", "<STR>"),
        (r"(?<![\w.])\d+(?:\.\d+)?\s?(?:[KMGTP]i?B|[kMG]B|bytes)\b", "<SIZE>"),
        (r"(?<![\w.])-?\d+(?:\.\d+)*(?:e[+-]?\d+)?\b", "<N>"),
    )
)


def normalise_message(message: str | None) -> str:
    """``message`` with its variable parts as placeholders, so equal failures compare equal.

    Numbers → ``<N>`` (``<SIZE>`` with a unit such as ``MiB``), paths → ``<PATH>``, ``0x7f…``
    → ``<HEX>``, long hex ids → ``<HASH>``, tensor shapes (``[2, 3]``, ``torch.Size([…])``) →
    ``<SHAPE>``, UUIDs, URLs, e-mail addresses, long random ids and tokens (``<ID>``), and
    quoted words without spaces (``'input_ids'``) → ``<STR>``. Whitespace is collapsed.
    """
    text = " ".join((message or "").split()).strip("*` ")
    for pattern, placeholder in _NORMALISERS:
        text = pattern.sub(placeholder, text)
    return text[:300]


def _primary(found: list[Found]) -> Traceback | None:
    """The failure that names an issue: the last Python traceback, else the first crash."""
    pythons = [tb for start, end, tb in found if end > start]
    if pythons:
        return pythons[-1]
    return found[0][2] if found else None


def error_signature(text: str | None) -> str | None:
    """``ExcType: normalised message @ module:func`` for the main failure in ``text``, or None.

    The type loses its module path (``torch.cuda.OutOfMemoryError`` → ``OutOfMemoryError``)
    and the place is the innermost frame, so the same failure reads the same across versions,
    machines and users.
    """
    tb = _primary(_found(text))
    if tb is None:
        return None
    exc = re.sub(r"^(?:[\w]+\.)+(?=\w)", "", tb.exc_type) or "Error"
    signature = f"{exc}: {normalise_message(tb.message)[:120]}".rstrip(": ")
    if tb.frames:
        frame = tb.frames[-1]
        signature += f" @ {frame.module}:{frame.func}" if frame.func else f" @ {frame.module}"
    return signature


_MARK = "\n[... {:,} characters cut ...]\n"
_MARK_RESERVE = 48


def _line_starts(text: str) -> list[int]:
    """The offset of every line's first character."""
    return [0] + [m.end() for m in re.finditer("\n", text)]


def _wanted_spans(text: str, budget: int) -> list[tuple[int, int]]:
    """Character spans of the tracebacks to keep, latest first, within ``budget`` characters."""
    starts = [*_line_starts(text), len(text) + 1]
    spans: list[tuple[int, int]] = []
    for first, last, _tb in reversed(_found(text)):
        start, end = starts[first], starts[last + 1] - 1
        if end - start + _MARK_RESERVE > budget:
            if spans:
                break
            start = end - max(budget - _MARK_RESERVE, 0)
            start = text.find("\n", start, end) + 1 or start
        spans.append((start, end))
        budget -= end - start + _MARK_RESERVE
    return spans


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted spans with overlapping or touching ones joined."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        elif end > start:
            merged.append((start, end))
    return merged


def _snap_end(text: str, pos: int) -> int:
    """``pos`` moved back to just after a line break, when one is near."""
    newline = text.rfind("\n", pos // 2, pos)
    return newline + 1 if newline >= 0 else pos


def _snap_start(text: str, pos: int) -> int:
    """``pos`` moved forward to the start of the next line, when one is near."""
    newline = text.find("\n", pos, pos + (len(text) - pos) // 2)
    return newline + 1 if newline >= 0 else pos


def _join(text: str, kept: list[tuple[int, int]]) -> str:
    """The kept spans of ``text`` with a marker in every gap."""
    pieces, last = [], 0
    for start, end in kept:
        if start > last:
            pieces.append(_MARK.format(start - last))
        pieces.append(text[start:end])
        last = end
    if last < len(text):
        pieces.append(_MARK.format(len(text) - last))
    return "".join(pieces)


def cut_log(text: str | None, max_chars: int) -> str:
    """``text`` cut to at most ``max_chars``: its head, the tracebacks that fit, its tail.

    Each cut is marked with how many characters went, so a reader (or a model) knows that
    something is missing. The latest traceback is kept first (clipped to its end, where the
    exception line is, if it alone is too long). Texts that already fit come back unchanged.
    """
    text = text or ""
    if len(text) <= max_chars:
        return text
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if max_chars < 4 * _MARK_RESERVE:
        head = max(max_chars - _MARK_RESERVE, 0)
        return (text[:head] + _MARK.format(len(text) - head))[: max(max_chars, 0)]
    room = max_chars - 2 * _MARK_RESERVE
    spans = _wanted_spans(text, room // 2)
    left = room - sum(end - start + _MARK_RESERVE for start, end in spans)
    head_end = _snap_end(text, left * 3 // 5)
    tail_start = _snap_start(text, len(text) - (left - head_end))
    return _join(text, _merge([(0, head_end), *spans, (tail_start, len(text))]))
