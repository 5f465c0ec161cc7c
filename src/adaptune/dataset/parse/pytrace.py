"""Python tracebacks read line by line, as they appear pasted into issues.

Handles the plain form, chained tracebacks (each is its own), a log prefix repeated on every
line (``(RayWorkerWrapper pid=7) ERROR 03-07 worker.py:581]``, ``[rank0]:``, ``> `` quotes),
logs that lost the indentation of source lines, and IPython's ``OSError   Traceback …`` form
with ``---> 12`` source lines and Colab's ``[path](url) in func()`` frames.
"""

from __future__ import annotations

import re

from adaptune.dataset.parse.crash import Frame, Traceback

Found = tuple[int, int, Traceback]
"""A traceback with the indexes of its first and last line."""

_HEAD = re.compile(r"Traceback \(most recent call last\)")
_IPY_HEAD = re.compile(r"^[\s`]*([A-Za-z_][\w.]*)\s+Traceback \(most recent call last\)\s*$")
_FRAME = re.compile(r'File "?([^",]+?)"?, line (\d{1,9})(?:, in (\S+))?')
_IPY_FRAME = re.compile(
    r"^(?:File\s+)?(<ipython-input-[^>]*>|Cell In\s?\[\d+\]|\S.*?\.pyx?)"
    r"(?::(\d{1,9})|, line (\d{1,9}))?,?\s+in\s+([\w<>.]+)"
)
_SKIP = re.compile(r"^[\s^~]*$|^\[Previous line repeated")
_MD_LINK = re.compile(r"^\[([^\]]+)\]\([^)]*\)")
_EXC = re.compile(r"^([A-Za-z_][\w.]*(?:\([\w.]+\)|\[[\w.]+\])?)(?::[ \t]*(.*))?$")
_MAX_LINES = 3000
_MAX_NOISE = 5


def _plausible_exception(name: str) -> bool:
    """Whether ``name`` looks like an exception class (``KeyError``, ``ray.RayTaskError(X)``)."""
    last = re.split(r"[(\[]", name, maxsplit=1)[0].rsplit(".", 1)[-1]
    return bool(last) and (last[0].isupper() or "rror" in last or "xception" in last)


def _prefix_pattern(prefix: str) -> re.Pattern[str] | None:
    """A pattern for the log prefix of a traceback header, with its numbers (times, pids) free."""
    if not prefix.strip():
        return None
    return re.compile(re.sub(r"\d+", r"\\d+", re.escape(prefix.rstrip())) + r"\s?")


def _unprefix(line: str, prefix: str, pattern: re.Pattern[str] | None) -> str:
    """``line`` without the log prefix (or indentation) that its traceback header carried."""
    if not prefix:
        return line
    if pattern is None:
        return line[len(prefix) :] if line[: len(prefix)].isspace() else line.lstrip()
    match = pattern.match(line)
    return line[match.end() :] if match else line


def _exception_line(body: str) -> tuple[str, str] | None:
    """``(type, message)`` when ``body`` is the closing line of a traceback."""
    match = _EXC.match(body.strip().strip("*`").strip())
    if match and _plausible_exception(match.group(1)):
        return match.group(1), (match.group(2) or "").strip()
    return None


def _frame_prefix(lines: list[str], start: int, head_prefix: str) -> str:
    """The log prefix of a traceback's lines, read off its first ``  File "…"`` line."""
    for line in lines[start + 1 : start + 4]:
        at = line.find('File "')
        if at >= 0:
            prefix = line[:at]
            return prefix[:-2] if prefix.endswith("  ") else prefix
    return head_prefix


def _frame(body: str) -> Frame | None:
    """The frame that a ``File "x.py", line 3, in f`` line names."""
    match = _FRAME.search(body)
    if match is None:
        return None
    return Frame(match.group(1).strip(), int(match.group(2)), match.group(3) or "")


def _python_at(lines: list[str], start: int, head_prefix: str) -> Found | None:
    """The traceback whose header is ``lines[start]``, if it ends in an exception line.

    A log prefix on every line is removed, and a source line right after a frame is skipped
    even when the log lost its indentation.
    """
    prefix = _frame_prefix(lines, start, head_prefix)
    pattern = _prefix_pattern(prefix)
    first = _frame(lines[start].split("last)", 1)[-1])
    frames, after_frame, noise = [first] if first else [], False, 0
    for j in range(start + 1, min(len(lines), start + _MAX_LINES)):
        body = _unprefix(lines[j], prefix, pattern)
        frame = _frame(body)
        if frame or _HEAD.search(body):
            if not frame:
                return None
            frames.append(frame)
            after_frame = True
            continue
        if _SKIP.match(body):
            continue
        exc = None if body[:1].isspace() else _exception_line(body)
        if exc:
            return start, j, Traceback(exc[0], exc[1], tuple(frames))
        noise += not (after_frame or body[:1].isspace())
        after_frame = False
        if noise > _MAX_NOISE:
            return None
    return None


def _ipython_at(lines: list[str], start: int, exc_type: str) -> Found | None:
    """The IPython-style traceback (``OSError   Traceback …``) whose header is ``lines[start]``."""
    frames: list[Frame] = []
    short = exc_type.rsplit(".", 1)[-1]
    for j in range(start + 1, min(len(lines), start + _MAX_LINES)):
        body = _MD_LINK.sub(r"\1", lines[j].strip())
        frame = _IPY_FRAME.match(body)
        if frame and not body[:1].isdigit():
            number = frame.group(2) or frame.group(3)
            frames.append(Frame(frame.group(1), int(number) if number else None, frame.group(4)))
            continue
        exc = _exception_line(body)
        if exc and exc[0].rsplit(".", 1)[-1] == short:
            return start, j, Traceback(exc[0], exc[1], tuple(frames))
        if _HEAD.search(body):
            return None
    return None


def _traceback_at(lines: list[str], i: int) -> Found | None:
    """The traceback whose header is ``lines[i]``, if there is one."""
    head = _HEAD.search(lines[i]) if "Traceback (" in lines[i] else None
    if head is None:
        return None
    ipy = _IPY_HEAD.match(lines[i])
    found = None
    if ipy and _plausible_exception(ipy.group(1)):
        found = _ipython_at(lines, i, ipy.group(1))
    return found or _python_at(lines, i, lines[i][: head.start()])


def python_tracebacks(lines: list[str]) -> list[Found]:
    """Every Python traceback in ``lines``, each with its first and last line index."""
    found: list[Found] = []
    i = 0
    while i < len(lines):
        tb = _traceback_at(lines, i)
        if tb:
            found.append(tb)
        i = tb[1] + 1 if tb else i + 1
    return found
