"""The software and hardware an issue was reported on, read from its text.

Reads vLLM's and PyTorch's ``collect_env.py`` output (``PyTorch version: 2.1.2+cu121``,
``GPU 0: NVIDIA A100-SXM4-80GB``, ``[pip3] transformers==4.40.0``), the ``datasets-cli env``
list (``- `datasets` version: 2.14.0``), llama.cpp's version lines (``version: 3325 (87e25a1d)``,
``main: build = 1883 (122ed484)``) and the answers of issue forms (``### Operating systems``).
Every field is optional: most issues state only part of their environment.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from adaptune.dataset.parse.sections import split_sections


@dataclass(frozen=True, slots=True)
class Environment:
    """What an issue says it ran on; ``None`` or empty where it does not say."""

    python: str | None = None
    """Python version (``3.10.12``)."""
    torch: str | None = None
    """PyTorch version as printed, local tag included (``2.1.2+cu121``)."""
    cuda: str | None = None
    """CUDA runtime version (``12.1.105``), else the one PyTorch was built with."""
    project_versions: dict[str, str] = field(default_factory=dict, hash=False)
    """Other packages by normalised name (``vllm``, ``transformers``, ``llama.cpp`` …)."""
    gpus: tuple[str, ...] = ()
    """One entry per GPU listed (``NVIDIA A100-SXM4-80GB``)."""
    os: str | None = None
    """Operating system as written (``Ubuntu 22.04.3 LTS (x86_64)``, ``Windows-10-…``)."""


_H = r"[^\S\n]"
_LEAD = rf"^{_H}*(?:[-*+>]{_H}*)*\**`?"
_VERSION = r"`?v?(?P<v>\d+(?:\.\d+)+[\w.+-]*)"
_FLAGS = re.IGNORECASE | re.MULTILINE


def _kv(keys: str) -> re.Pattern[str]:
    """``key version: 1.2.3`` / ``- `key` version (GPU?): 1.2.3`` / ``key: 1.2.3`` lines."""
    return re.compile(
        rf"{_LEAD}(?:{keys})`?\**(?:{_H}+version)?(?:{_H}*\([^)\n]*\))?\**{_H}*[:=]{_H}*{_VERSION}",
        _FLAGS,
    )


_PYTHON = (_kv("python"), re.compile(r"python(?:3)?==(?P<v>\d+\.\d+(?:\.\d+)?)", _FLAGS))
_PYTHON_PROSE = re.compile(r"\bPython (?P<v>3\.\d{1,2}(?:\.\d{1,3})?)\b")
_TORCH = (
    _kv("pytorch|torch"),
    re.compile(rf"^\[(?:pip3?|conda)\]{_H}+(?:py)?torch(?:=={_H}*|{_H}+){_VERSION}", _FLAGS),
    re.compile(rf"torch=={_VERSION}", _FLAGS),
)
_CUDA = (
    _kv("cuda runtime"),
    _kv("cuda|cuda_version"),
    re.compile(r"Cuda compilation tools, release (?P<v>\d+\.\d+)", _FLAGS),
    _kv("cuda used to build pytorch"),
)
_OS = re.compile(rf"{_LEAD}(?:OS|Operating System|Platform)\**{_H}*:{_H}*`?(?P<v>[^\n`]+)", _FLAGS)
_OS_SECTIONS = ("what operating system are you seeing the problem on", "operating systems", "os")
_GPUS = (
    re.compile(rf"GPU{_H}+(?P<i>\d+){_H}*:{_H}*(?P<v>[^\n(]+)"),
    re.compile(rf"Device{_H}+(?P<i>\d+):{_H}*(?P<v>[^,\n]+),{_H}*compute capability"),
    re.compile(
        rf"^{_H}*(?:ggml_vulkan:{_H}*|Vulkan)(?P<i>\d+){_H}*[:=]{_H}*(?P<v>[^|(\n]+)", _FLAGS
    ),
    re.compile(rf"ggml_metal_init:{_H}*(?:found device|GPU name):{_H}*(?P<i>)(?P<v>[^\n]+)"),
    re.compile(rf"{_LEAD}GPUs?\**{_H}*:{_H}*(?P<i>)(?P<v>[^\n]+)", _FLAGS),
)
_LLAMA = (
    re.compile(rf"{_LEAD}version:{_H}*b?(?P<v>\d+){_H}*\([0-9a-f]{{6,40}}\)", _FLAGS),
    re.compile(rf"build{_H}*[=:]{_H}*(?P<v>\d+){_H}*\((?:[0-9a-f]{{6,40}}|unknown)\)", _FLAGS),
    re.compile(rf"build:{_H}*[0-9a-f]{{6,40}}{_H}*\((?P<v>\d+)\)", _FLAGS),
    re.compile(rf"llama\.cpp{_H}+(?:build|version){_H}*:?{_H}*b?(?P<v>\d+)", _FLAGS),
    re.compile(rf"{_LEAD}version:{_H}*b(?P<v>\d{{3,5}})\b", _FLAGS),
    re.compile(rf'"build"{_H}*:{_H}*(?P<v>\d+)'),
)
_PACKAGES = frozenset(
    {
        *("vllm", "transformers", "datasets", "huggingface-hub", "tokenizers", "accelerate"),
        *("peft", "pyarrow", "triton", "xformers", "flash-attn", "flashinfer", "flashinfer-python"),
        *("safetensors", "llama-cpp-python", "ray", "numpy", "pandas", "sentence-transformers"),
        *("trl", "bitsandbytes", "torchvision", "jax", "tensorflow", "fsspec", "deepspeed"),
        *("optimum", "gguf", "outlines", "xgrammar", "openai", "fastapi", "pydantic", "nlp"),
    }
)
_PIP = re.compile(rf"^\[(?:pip3?|conda)\]{_H}+(?P<k>[\w.-]+)(?:=={_H}*|{_H}+){_VERSION}", _FLAGS)
_PINNED = re.compile(rf"(?<![\w.-])(?P<k>[A-Za-z][\w.-]*)=={_VERSION}")
_NAMED = re.compile(
    rf"{_LEAD}(?P<k>[A-Za-z][\w.-]*)`?\**{_H}+version(?:{_H}*\([^)\n]*\))?\**{_H}*:{_H}*{_VERSION}",
    _FLAGS,
)
_NOT_PROJECTS = frozenset(
    {
        *("python", "pytorch", "torch", "cuda", "cudnn", "gcc", "clang", "cmake", "libc", "rocm"),
        *("hip", "miopen", "sdk", "driver", "os", "kernel", "runtime", "neuron", "platform"),
        *("xnnpack", "the", "my", "latest", "current", "this", "nvidia", "conda", "pip"),
    }
)
_CANDIDATE = re.compile(
    r"version|build|torch|python|cuda|gpu|device|vulkan|metal|os\W{0,3}:|platform|==|\[pip|\[conda"
    r"|release"
)
_HEADLINE = ("vllm", "llama.cpp", "transformers", "datasets", "huggingface-hub", "pyarrow")
_UNKNOWN = re.compile(r"could not collect|^n/?a$|^none$|^unknown$", re.IGNORECASE)


def _candidates(text: str) -> str:
    """Only the lines that could state a version, a GPU or an OS (a large speed-up on logs)."""
    low = text.lower()
    if len(low) != len(text):
        return text
    lines, pos = [], 0
    while match := _CANDIDATE.search(low, pos):
        start = text.rfind("\n", 0, match.start()) + 1
        pos = text.find("\n", match.end())
        pos = len(text) if pos < 0 else pos
        lines.append(text[start:pos])
    return "\n".join(lines)


def _first(patterns: Iterable[re.Pattern[str]], text: str) -> str | None:
    """The first usable ``v`` group that any of ``patterns`` (in priority order) finds."""
    for pattern in patterns:
        for match in pattern.finditer(text):
            value = match.group("v").strip(" \t*`.,;")
            if value and not _UNKNOWN.search(value):
                return value
    return None


def _package_key(name: str) -> str:
    """A package name the way PyPI compares them (``Huggingface_hub`` → ``huggingface-hub``)."""
    return re.sub(r"[-_.]+", "-", name.strip("`*").lower())


def _projects(text: str) -> dict[str, str]:
    """Versions of the packages and projects other than Python and PyTorch."""
    versions: dict[str, str] = {}
    for pattern, curated in ((_NAMED, False), (_PIP, True), (_PINNED, True)):
        for match in pattern.finditer(text):
            key = _package_key(match.group("k"))
            if key in _NOT_PROJECTS or (curated and key not in _PACKAGES):
                continue
            versions.setdefault(key, match.group("v").rstrip(".,;"))
    build = _first(_LLAMA, text)
    if build and build != "0":
        versions.setdefault("llama.cpp", f"b{build}")
    return versions


def _gpus(text: str) -> tuple[str, ...]:
    """GPU names, one per device index (the first listing of an index wins)."""
    by_index: dict[str, str] = {}
    for pattern in _GPUS:
        for match in pattern.finditer(text):
            name = re.sub(r"\s*\(UUID:.*$", "", match.group("v")).strip(" \t*`,.;")
            if name and not _UNKNOWN.search(name) and len(name) <= 80:
                by_index.setdefault(match.group("i") or f"#{len(by_index)}", name)
        if by_index:
            break
    return tuple(by_index.values())


def _os(text: str, full: str) -> str | None:
    """The operating system line, or the answer to an issue form's operating-system question."""
    stated = _first((_OS,), text)
    low = full.lower()
    if stated or ("operating system" not in low and "# os" not in low):
        return stated[:80] if stated else None
    sections = split_sections(full)
    for key in _OS_SECTIONS:
        answer = sections.get(key, "").strip().split("\n", 1)[0].strip()
        if answer and not _UNKNOWN.search(answer):
            return answer[:80]
    return None


def parse_environment(text: str | None) -> Environment:
    """Everything ``text`` says about Python, PyTorch, CUDA, packages, GPUs and the OS."""
    full = (text or "").replace("\r\n", "\n").replace("\r", "\n")
    text = _candidates(full)
    torch = _first(_TORCH, text)
    cuda = _first(_CUDA, text)
    if cuda is None and torch and (tag := re.search(r"\+cu(\d{2,3})\b", torch)):
        cuda = f"{tag.group(1)[:-1]}.{tag.group(1)[-1]}"
    return Environment(
        python=_first(_PYTHON, text) or _first((_PYTHON_PROSE,), text),
        torch=torch,
        cuda=cuda,
        project_versions=_projects(text),
        gpus=_gpus(text),
        os=_os(text, full),
    )


def _rank(name: str) -> int:
    """Headline projects first, in their order; the others after them, in their own order."""
    return _HEADLINE.index(name) if name in _HEADLINE else len(_HEADLINE)


def summary(env: Environment) -> str:
    """One line such as ``Python 3.10.12, torch 2.1.2, CUDA 12.1, vllm 0.4.0, 2x A100, Ubuntu``.

    Empty when nothing is known, so callers can leave the line out.
    """
    parts = [f"Python {env.python}" if env.python else ""]
    parts += [f"torch {env.torch}" if env.torch else "", f"CUDA {env.cuda}" if env.cuda else ""]
    ranked = sorted(env.project_versions, key=_rank)
    parts += [f"{name} {env.project_versions[name]}" for name in ranked[:4]]
    counts: dict[str, int] = {}
    for gpu in env.gpus:
        counts[gpu] = counts.get(gpu, 0) + 1
    parts += [f"{n}x {gpu}" if n > 1 else gpu for gpu, n in counts.items()]
    parts.append(env.os or "")
    return ", ".join(part for part in parts if part)
