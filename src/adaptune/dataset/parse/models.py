"""Which models an issue is about: Hugging Face repo ids and well-known model families.

``org/name`` is a Hugging Face id only when it is not something else that also has a slash: a
file path (``vllm/engine/llm_engine.py``), a unit (``tokens/s``), a word pair (``and/or``), a
GitHub repository (``huggingface/transformers``, ``owner/repo#12``), a Docker image or a URL
other than ``huggingface.co/org/name``. Bare ids that are dataset names in
``load_dataset("…")`` are left out. Families (``llama``, ``qwen`` …) are matched as words or
CamelCase parts (``LlamaForCausalLM``, ``TinyLlama``), but ``llama.cpp`` is a program, not one.
"""

from __future__ import annotations

import re
from bisect import bisect_right

_SLASH = re.compile(r"/(?<=[A-Za-z0-9_.-]/)[A-Za-z0-9_.-]{2,96}(?![A-Za-z0-9_/\\-])")
_ORG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
_URL = re.compile(r"://[^\s)\]>\"'`]*")
_TOKEN = re.compile(r"[^\s)\]>\"'`]*")
_SCHEME = re.compile(r"[A-Za-z][\w+.-]{0,15}$")
_HF_BARE = re.compile(r"(?<![\w.])(?:huggingface|hf)\.co/")
_HF_URL = re.compile(
    r"(?:https?://)?(?:www\.)?(?:huggingface\.co|hf\.co)/(?!(?:datasets|spaces|docs|blog|papers"
    r"|api|models|organizations|collections|learn|tasks|settings|transformers|nlp|course)/)"
    r"([\w.-]+/[\w.-]+)"
)
_LOAD_DATASET = re.compile(r"load_dataset\(\s*['\"]([^'\"]+)['\"]")
_FILE_EXT = re.compile(
    r"\.(?:py|pyx|pxi|pxd|c|cc|cpp|cu|cuh|h|hpp|m|so|dll|txt|md|json|jsonl|yaml|yml|toml|cfg|ini"
    r"|sh|log|csv|tsv|parquet|arrow|zip|gz|tar|bz2|xz|whl|lock|html|ipynb|pt|pth|bin|ckpt|onnx"
    r"|gguf|ggml|safetensors|model|exe|png|jpg|jpeg|wav|mp3|mp4|raw|tgz|pdf|dat)$",
    re.IGNORECASE,
)
_NOT_A_NAME = re.compile(r"^(?:i?q\d|b?fp?\d+$|v\d+(?:\.\d+)*$|\d)", re.IGNORECASE)
_RANDOM_ORG = re.compile(r"^(?:[0-9a-f]{8,}|[^-_.]{25,}|.*_.*)$")
_KNOWN_ORGS = frozenset(
    {
        *("meta-llama", "mistralai", "qwen", "google", "microsoft", "facebook", "bigscience"),
        *("tiiuae", "eleutherai", "deepseek-ai", "thebloke", "openai", "stabilityai"),
        *("huggingfaceh4", "huggingfacetb", "lmsys", "nousresearch", "01-ai", "thudm"),
        *("internlm", "baichuan-inc", "bigcode", "salesforce", "allenai", "nvidia", "ibm-granite"),
        *("mosaicml", "databricks", "togethercomputer", "openbmb", "llava-hf", "baai"),
        *("sentence-transformers", "intfloat", "unsloth", "neuralmagic", "casperhansen"),
        *("bartowski", "lmstudio-community", "teknium", "cohereforai", "coherelabs", "ai21labs"),
        *("openai-community", "google-bert", "google-t5", "hf-internal-testing", "tinyllama"),
        *("codellama", "upstage", "moonshotai", "zai-org", "xai-org", "ggml-org", "opengvlab"),
    }
)
_STOP_ORGS = frozenset(
    {
        *("build", "conda-forge", "cmakefiles", "vendor", "tests", "test", "src", "lib", "lib64"),
        *("examples", "example", "benchmarks", "docs", "doc", "include", "bin", "usr", "etc"),
        *("tmp", "home", "var", "opt", "api", "models", "model", "data", "datasets", "scripts"),
        *("json", "text", "csv", "parquet", "application", "image", "audio", "video", "http"),
        *("https", "train", "docker", "library", "ubuntu", "python", "pytorch", "huggingface"),
        *("vllm", "vllm-project", "ggerganov", "fix", "feat", "feature", "bugfix", "hotfix"),
        *("refs", "origin", "upstream", "main", "master", "root", "user", "users", "workspace"),
        *("mnt", "content", "kaggle", "drive", "app", "local", "cache", "checkpoints", "output"),
        *("outputs", "config", "configs", "logs", "results", "dist", "release", "ray-project"),
        *("runs", "course", "transformers", "nlp", "directory", "distributed", "repos", "commit"),
        *("tags", "linux", "templates", "none", "null", "windows", "darwin", "macos", "arch"),
        *("sgl-project", "triton-lang", "ollama", "llama.cpp", "csrc", "ggml", "common", "v1"),
    }
)
_FAMILIES = {
    "llama": "llama",
    "codellama": "codellama",
    "mistral": "mistral",
    "mixtral": "mixtral",
    "pixtral": "pixtral",
    "qwen": "qwen",
    "qwq": "qwen",
    "gemma": "gemma",
    "phi": "phi",
    "falcon": "falcon",
    "gpt2": "gpt2",
    "gpt-2": "gpt2",
    "gpt-j": "gpt-j",
    "gptj": "gpt-j",
    "gpt-neox": "gpt-neox",
    "gpt-neo": "gpt-neo",
    "bert": "bert",
    "distilbert": "distilbert",
    "roberta": "roberta",
    "deberta": "deberta",
    "t5": "t5",
    "bart": "bart",
    "deepseek": "deepseek",
    "bloom": "bloom",
    "starcoder": "starcoder",
    "llava": "llava",
    "whisper": "whisper",
    "baichuan": "baichuan",
    "chatglm": "chatglm",
    "internlm": "internlm",
    "internvl": "internvl",
    "vicuna": "vicuna",
    "mpt": "mpt",
    "olmo": "olmo",
    "granite": "granite",
    "stablelm": "stablelm",
    "nemotron": "nemotron",
    "jamba": "jamba",
    "mamba": "mamba",
    "minicpm": "minicpm",
    "dbrx": "dbrx",
    "command-r": "command-r",
}
_FAMILY = re.compile("|".join(sorted(map(re.escape, _FAMILIES), key=len, reverse=True)))
_CPP_AFTER = re.compile(r"[.\s_-]?cpp", re.IGNORECASE)
_STOP_NAMES = frozenset(
    {
        *("cuda", "pytorch", "tensorrt-llm", "apex", "cutlass", "nccl", "triton", "models"),
        *("blob", "tree", "resolve", "raw", "main", "commits", "discussions"),
        *("text-generation-webui", "lm-evaluation-harness", "text-generation-inference"),
    }
)
_SHORT_TOKEN = re.compile(r"^[A-Za-z]{1,5}\d{1,5}[A-Za-z]?$")
_LANG_PAIR = re.compile(r"^[a-z]{2,3}-[a-z]{2,3}$")
_DOMAIN = re.compile(r"\.(?:com|org|io|ai|net|co|dev|cn|edu|gov|me)$")
_LETTER = re.compile(r"[A-Za-z]")

Spans = tuple[list[int], list[int]]
"""Sorted start offsets and the matching end offsets of the URLs in a text."""


def _urls(text: str) -> tuple[Spans, list[tuple[int, str]]]:
    """Where the URLs are, and the ``org/name`` ids of the ``huggingface.co`` ones."""
    spans: list[tuple[int, int]] = []
    for match in _URL.finditer(text):
        scheme = _SCHEME.search(text, max(0, match.start() - 16), match.start())
        spans.append((scheme.start() if scheme else match.start(), match.end()))
    for match in _HF_BARE.finditer(text):
        spans.append((match.start(), _TOKEN.match(text, match.end()).end()))
    ids = [(start, i) for start, end in spans if (i := _url_id(text, start, end))]
    spans.sort()
    return ([s for s, _ in spans], [e for _, e in spans]), ids


def _url_id(text: str, start: int, end: int) -> str | None:
    """The ``org/name`` of a ``huggingface.co`` URL (not a truncated one ending in ``...``)."""
    hf = _HF_URL.match(text, start, end)
    if hf is None or hf.group(1).endswith(".."):
        return None
    org, _, name = hf.group(1).rstrip(".").partition("/")
    ok = org.lower() not in _STOP_ORGS and _shape_ok(org, name)
    return f"{org}/{name}" if ok else None


def _inside(spans: Spans, pos: int) -> bool:
    """Whether ``pos`` falls inside one of the URL ``spans``."""
    i = bisect_right(spans[0], pos) - 1
    return i >= 0 and pos < spans[1][i]


def _shape_ok(org: str, name: str) -> bool:
    """Whether the two halves have the shape of an organisation and a repository name."""
    if not (_LETTER.search(org) and _LETTER.search(name)) or len(name) < 2:
        return False
    if org[0] in ".-" or name[0] in ".-" or name[-1] in "-_" or _NOT_A_NAME.match(name):
        return False
    if _FILE_EXT.search(name) or _LANG_PAIR.match(name) or name.lower() in _STOP_NAMES:
        return False
    return not (len(name) > 24 and not re.search(r"[-_.]", name))


def is_model_id(candidate: str) -> bool:
    """Whether ``org/name`` reads as a Hugging Face id rather than a path, unit or word pair."""
    org, _, name = candidate.partition("/")
    low = org.lower()
    if low in _STOP_ORGS or low.startswith("cuda") or _DOMAIN.search(low):
        return False
    if not _shape_ok(org, name):
        return False
    if low in _KNOWN_ORGS:
        return True
    if len(org) < 2 or _RANDOM_ORG.match(org):
        return False
    has_digit = any(c.isdigit() for c in name)
    if (_SHORT_TOKEN.match(org) and _SHORT_TOKEN.match(name)) or (org.isalpha() and not has_digit):
        return False  # A100/A800, nb01/nb00; squad/plain_text, numpy/pandas-like
    return bool(re.search(r"[-_.]", name)) or (has_digit and len(name) >= 3)


def _bare_ids(text: str, spans: Spans) -> list[tuple[int, str]]:
    """``org/name`` ids written outside URLs, with where they start."""
    found = []
    for match in _SLASH.finditer(text):
        org = _ORG.search(text, max(0, match.start() - 96), match.start())
        if org is None or _inside(spans, org.start()):
            continue
        before = text[org.start() - 1] if org.start() else " "
        after = text[match.end() : match.end() + 1]
        if before.isalnum() or before in "_./@\\~-" or after in ("#", "@"):
            continue
        candidate = text[org.start() : match.end()]
        if not candidate.endswith("..") and is_model_id(candidate.rstrip(".")):
            found.append((org.start(), candidate.rstrip(".")))
    return found


def _families(text: str) -> list[tuple[int, str]]:
    """Model families named as words or CamelCase parts, with where they start."""
    low = text.lower()
    if len(low) != len(text):
        return []
    found = []
    for match in _FAMILY.finditer(low):
        start, end = match.span()
        before = text[start - 1] if start else " "
        after = text[end] if end < len(text) else " "
        camel = before.islower() and text[start].isupper()
        if (before.isalnum() and not camel) or (after.isalpha() and after.islower()):
            continue
        if match.group(0).endswith("llama") and _CPP_AFTER.match(text, end):
            continue
        found.append((start, _FAMILIES[match.group(0)]))
    return found


def find_models(text: str | None) -> tuple[str, ...]:
    """Hugging Face ids and model families in ``text``, deduplicated, in order of appearance.

    Ids keep their spelling (the first one seen wins when two differ only in case); families
    are lower case (``Llama-2`` and ``LlamaForCausalLM`` both give ``llama``).
    """
    text = text or ""
    spans, url_ids = _urls(text)
    datasets = {m.group(1).lower() for m in _LOAD_DATASET.finditer(text)}
    ids = [(pos, 0, i) for pos, i in url_ids + _bare_ids(text, spans) if i.lower() not in datasets]
    found = sorted(ids + [(pos, 1, family) for pos, family in _families(text)])
    seen: dict[str, str] = {}
    for _pos, _kind, name in found:
        seen.setdefault(name.lower(), name)
    return tuple(seen.values())
