"""One-line crash reports from native code and bare exception lines, as :class:`Traceback` values.

llama.cpp and CUDA code die without a Python traceback: ``GGML_ASSERT(cond) failed`` (or the
older ``GGML_ASSERT: file:line: cond``), ``CUDA error 2 at file:line: out of memory``,
``Segmentation fault``, an uncaught C++ exception. Python errors are often quoted as a single
``RuntimeError: …`` line, too. Each such line becomes a frame-less (or one-frame) traceback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FILE_LINE = r"(?:(?P<file>[^\s:()]+(?::\\[^\s:]*)?):(?P<line>\d{1,9}):\s*)"
_MSG = r"(?P<msg>\S.*)"
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("GGML_ASSERT", re.compile(r"GGML_ASSERT:\s*(?P<file>\S.*?):(?P<line>\d{1,9}):\s*(?P<msg>.*)")),
    ("GGML_ASSERT", re.compile(_FILE_LINE + r"?GGML_ASSERT\((?P<msg>.*)\) failed")),
    ("", re.compile(r"(?<![\w.])(?P<type>[A-Za-z_][\w.]*\w(?:Error|Exception)):[ \t]*" + _MSG)),
    ("CUDA error", re.compile(r"CUDA error \d+ at (?P<file>\S.*?):(?P<line>\d{1,9}):\s*" + _MSG)),
    ("CUDA error", re.compile(r"CUDA error:\s*(?P<msg>\S.*)")),
    (
        "",
        re.compile(
            r"(?:terminate called after throwing an instance of|uncaught exception of type)"
            r" '?(?P<type>\w+(?:::\w+)*)'?(?::\s*(?P<msg>.*))?"
        ),
    ),
    ("Segmentation fault", re.compile(r"Segmentation fault|SIGSEGV")),
    ("Illegal instruction", re.compile(r"Illegal instruction|SIGILL")),
    ("Bus error", re.compile(r"\bBus error\b|SIGBUS")),
    ("Floating point exception", re.compile(r"Floating point exception|SIGFPE")),
)
_HINTS = ("GGML_ASSERT", "rror", "xception", "SIG", "fault", "Illegal instruction")


@dataclass(frozen=True, slots=True)
class Frame:
    """One stack frame: where the code was when the error passed through."""

    file: str
    """Source path as printed (``/usr/lib/python3.10/site-packages/vllm/engine/x.py``)."""
    line: int | None
    """Line number, when printed."""
    func: str
    """Function name (``<module>`` at top level; empty for native crash lines)."""

    @property
    def module(self) -> str:
        """A stable name for the file: ``vllm.engine.x`` for packages, else the file's stem."""
        return module_name(self.file)


@dataclass(frozen=True, slots=True)
class Traceback:
    """An error found in text: its type, its message and the frames it came through."""

    exc_type: str
    """``ValueError``, ``torch.cuda.OutOfMemoryError``, ``GGML_ASSERT``, ``CUDA error`` …"""
    message: str
    """The message as written (first line only)."""
    frames: tuple[Frame, ...] = ()
    """Outermost first, as Python prints them; native crashes have at most one."""


_KNOWN_PACKAGES = frozenset(
    {
        *("vllm", "torch", "transformers", "datasets", "huggingface_hub", "accelerate", "peft"),
        *("ray", "triton", "pyarrow", "numpy", "fsspec", "llama_cpp", "gguf", "nlp", "tokenizers"),
        *("safetensors", "sentence_transformers", "xformers", "flash_attn", "multiprocess"),
        *("dill", "pandas", "evaluate", "trl", "deepspeed", "bitsandbytes"),
    }
)
"""Top-level packages whose source checkouts (not only installs) name a frame's module."""


def module_name(path: str) -> str:
    """``…/site-packages/vllm/engine/x.py`` → ``vllm.engine.x``; other files → their stem."""
    path = path.strip().replace("\\", "/")
    if path.startswith("<"):
        return path.strip("<>").removeprefix("frozen ").strip() or path
    parts = [p for p in path.split("/") if p]
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            parts = parts[len(parts) - parts[::-1].index(marker) :]
            break
    else:
        known = [i for i, p in enumerate(parts[:-1]) if p in _KNOWN_PACKAGES]
        parts = parts[known[-1] :] if known else parts[-1:]
    if not parts:
        return path
    parts[-1] = re.sub(r"\.(?:pyx?|cpp|cu|cc|c|h|m)$", "", parts[-1])
    return ".".join(parts)


def _from_match(kind: str, match: re.Match[str]) -> Traceback:
    """A :class:`Traceback` from one crash pattern's match."""
    groups = match.groupdict()
    exc_type = kind or (groups.get("type") or "")
    message = (groups.get("msg") or "").strip().rstrip("`").strip()
    frames: tuple[Frame, ...] = ()
    if groups.get("file"):
        frames = (Frame(groups["file"], int(groups["line"]), ""),)
    return Traceback(exc_type, message, frames)


def crash_in_line(line: str) -> Traceback | None:
    """The crash or error that ``line`` reports, if any (the most specific pattern wins)."""
    if not any(hint in line for hint in _HINTS):
        return None
    for kind, pattern in _PATTERNS:
        match = pattern.search(line)
        if match:
            return _from_match(kind, match)
    return None
