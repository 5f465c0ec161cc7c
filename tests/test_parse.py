"""The parsing layer: issue-form sections, tracebacks, environments, models and links.

Table-driven over real issue bodies (``tests/fixtures/parse``), with property tests that no
parser raises on any text, and one pass over every body in ../shared/data.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adaptune.dataset.parse.environment import Environment, parse_environment, summary
from adaptune.dataset.parse.links import IssueRef, duplicate_of, fixed_issues
from adaptune.dataset.parse.models import _FAMILIES as FAMILIES
from adaptune.dataset.parse.models import find_models
from adaptune.dataset.parse.sections import (
    clean_body,
    heading_key,
    split_sections,
    strip_html_comments,
)
from adaptune.dataset.parse.traceback import (
    cut_log,
    error_signature,
    find_tracebacks,
    normalise_message,
)
from conftest import shared_file

FIXTURES = Path(__file__).parent / "fixtures" / "parse"


def fixture(name: str) -> str:
    """A real issue body from tests/fixtures/parse."""
    return (FIXTURES / name).read_text(encoding="utf-8")


# --- sections -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "key"),
    [
        ("🐛 Describe the bug", "describe the bug"),
        ("🚀 The feature, motivation and pitch", "the feature motivation and pitch"),
        (
            "Your current environment (if you think it is necessary)",
            "your current environment if you think it is necessary",
        ),
        (
            "What's your difficulty of supporting the model you want?",
            "whats your difficulty of supporting the model you want",
        ),
        ("Before submitting a new issue...", "before submitting a new issue"),
        ("📚 The doc issue", "the doc issue"),
    ],
)
def test_heading_key(title: str, key: str) -> None:
    assert heading_key(title) == key


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a <!-- hidden --> b", "a  b"),
        ("<!-- one\nline two -->kept", "kept"),
        ("a <!-- unterminated", "a <!-- unterminated"),
        (None, ""),
    ],
)
def test_strip_html_comments(text: str | None, expected: str) -> None:
    assert strip_html_comments(text) == expected


@pytest.mark.parametrize(
    ("name", "keys"),
    [
        ("vllm_4655_collect_env.md", ["your current environment", "describe the bug"]),
        (
            "vllm_8017_issue_form.md",
            ["your current environment", "describe the bug", "before submitting a new issue"],
        ),
        (
            "datasets_2600_issue.md",
            [
                "describe the bug",
                "steps to reproduce the bug",
                "expected results",
                "actual results",
                "environment info",
            ],
        ),
        ("llamacpp_4977_ggml_assert.md", ["body"]),
    ],
)
def test_split_sections_of_real_bodies(name: str, keys: list[str]) -> None:
    sections = split_sections(fixture(name))
    assert list(sections) == keys
    assert all("<!--" not in value for value in sections.values())


def test_split_sections_details() -> None:
    body = "intro\r\n### A\r\n_No response_\r\n### B\r\n```\r\n### not a heading\r\n```\r\n"
    assert split_sections(body) == {"body": "intro", "a": "", "b": "```\n### not a heading\n```"}
    assert split_sections("no headings at all") == {"body": "no headings at all"}
    assert split_sections("### A\none\n### A\ntwo") == {"a": "one\n\ntwo"}
    assert split_sections(None) == {} == split_sections("")


def test_clean_body_drops_template_boilerplate() -> None:
    cleaned = clean_body(fixture("vllm_8017_issue_form.md"))
    assert cleaned.startswith("### 🐛 Describe the bug")
    for gone in (
        "Before submitting",
        "Make sure you already searched",
        "collect_env.py`",
        "<summary>",
    ):
        assert gone not in cleaned
    assert "split_qkv" in cleaned and "\n\n\n" not in cleaned
    env_info = clean_body(fixture("datasets_2600_issue.md"))
    assert "<!--" not in env_info and "- `datasets` version: 1.9.0" in env_info


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("### Model\n\nllama\n\n### Alternatives\n\n_No response_\n", "### Model\n\nllama"),
        (
            "# Prerequisites\n\nPlease answer the following questions for yourself before "
            "submitting an issue.\n\n- [x] I am running the latest code.\n\nIt crashes.",
            "It crashes.",
        ),
        ("## Title\n### Sub\ntext", "## Title\n\n### Sub\ntext"),
        ("keep\n- [ ] my own todo\n\n\n\nend", "keep\n- [ ] my own todo\n\nend"),
        (None, ""),
    ],
)
def test_clean_body(body: str | None, expected: str) -> None:
    assert clean_body(body) == expected


# --- tracebacks -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "exc_type", "message", "frames", "signature"),
    [
        (
            "vllm_4655_collect_env.md",
            "ValueError",
            "The number of required GPUs exceeds the total number of available GPUs",
            5,
            "ValueError: The number of required GPUs exceeds the total number of available GPUs "
            "in the cluster. @ vllm.executor.ray_utils:initialize_ray_cluster",
        ),
        (
            "datasets_2600_issue.md",
            "IndexError",
            "list index out of range",
            8,
            "IndexError: list index out of range @ datasets.table:from_tables",
        ),
        (
            "datasets_301_ipython.md",
            "OSError",
            "[Errno 18] Invalid cross-device link: '/home/local",
            4,
            "OSError: [Errno <N>] Invalid cross-device link: '<PATH>' -> '<PATH>' "
            "@ nlp.arrow_reader:download_from_hf_gcs",
        ),
        (
            "llamacpp_4977_ggml_assert.md",
            "GGML_ASSERT",
            "to_fp32_cl != nullptr",
            1,
            "GGML_ASSERT: to_fp32_cl != nullptr @ ggml-opencl",
        ),
    ],
)
def test_tracebacks_of_real_bodies(
    name: str, exc_type: str, message: str, frames: int, signature: str
) -> None:
    text = fixture(name)
    (tb,) = find_tracebacks(text)
    assert (tb.exc_type, len(tb.frames)) == (exc_type, frames)
    assert tb.message.startswith(message)
    assert error_signature(text) == signature
    assert error_signature(text.replace("\n", "\r\n")) == signature


CHAINED = """Traceback (most recent call last):
  File "/usr/lib/python3.10/site-packages/vllm/a.py", line 10, in load
    import missing
ModuleNotFoundError: No module named 'missing'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/usr/lib/python3.10/site-packages/vllm/b.py", line 20, in main
    raise RuntimeError("wrapped")
RuntimeError: wrapped
"""

PREFIXED = """(Worker pid=214) ERROR 09-27 05:20:38 w.py:233] Traceback (most recent call last):
(Worker pid=214) ERROR 09-27 05:20:39 w.py:233]   File "/x/site-packages/vllm/w.py", line 9, in run
(Worker pid=214) ERROR 09-27 05:20:39 w.py:233]     output = executor(*args)
(Worker pid=214) ERROR 09-27 05:20:39 w.py:233]              ^^^^^^^^^^^^^^
(Worker pid=214) ERROR 09-27 05:20:40 w.py:233] torch.OutOfMemoryError: Tried to allocate 20.00 MiB
"""

FLATTENED = """ERROR 12-13 08:58:11 engine.py:165] Traceback (most recent call last):
ERROR 12-13 08:58:11 engine.py:165] File "/w/site-packages/vllm/engine.py", line 163, in start
ERROR 12-13 08:58:11 engine.py:165] self.run_engine_loop()
ERROR 12-13 08:58:11 engine.py:165] ^^^^^^^^^^^^^^^^^^^^^^
ERROR 12-13 08:58:11 engine.py:165] File "/w/site-packages/vllm/core/block.py", line 22, in allocate
ERROR 12-13 08:58:11 engine.py:165] request_outputs = self.engine_step()
ERROR 12-13 08:58:11 engine.py:165] NoFreeBlocksError
"""


@pytest.mark.parametrize(
    ("text", "types", "signature"),
    [
        (CHAINED, ["ModuleNotFoundError", "RuntimeError"], "RuntimeError: wrapped @ vllm.b:main"),
        (
            PREFIXED,
            ["torch.OutOfMemoryError"],
            "OutOfMemoryError: Tried to allocate <SIZE> @ vllm.w:run",
        ),
        (FLATTENED, ["NoFreeBlocksError"], "NoFreeBlocksError @ vllm.core.block:allocate"),
        (
            "> Traceback (most recent call last):\n"
            '>   File "a.py", line 1, in f\n'
            "> KeyError: 'x'",
            ["KeyError"],
            "KeyError: <STR> @ a:f",
        ),
    ],
)
def test_python_traceback_shapes(text: str, types: list[str], signature: str) -> None:
    assert [tb.exc_type for tb in find_tracebacks(text)] == types
    assert error_signature(text) == signature


@pytest.mark.parametrize(
    ("line", "exc_type", "message", "file"),
    [
        (
            "GGML_ASSERT: /src/ggml.c:2990: ctx->mem_buffer != NULL",
            "GGML_ASSERT",
            "ctx->mem_buffer != NULL",
            "/src/ggml.c",
        ),
        (
            "ggml/src/ggml.c:2738: GGML_ASSERT(ggml_can_mul_mat(a, b)) failed",
            "GGML_ASSERT",
            "ggml_can_mul_mat(a, b)",
            "ggml/src/ggml.c",
        ),
        (
            r"D:\a\llama.cpp\ggml\src\ggml.c:5816: GGML_ASSERT(ok) failed",
            "GGML_ASSERT",
            "ok",
            r"D:\a\llama.cpp\ggml\src\ggml.c",
        ),
        (
            "CUDA error 2 at ggml-cuda.cu:462: out of memory",
            "CUDA error",
            "out of memory",
            "ggml-cuda.cu",
        ),
        (
            "CUDA error: an illegal memory access was encountered",
            "CUDA error",
            "an illegal memory access was encountered",
            None,
        ),
        (
            "RuntimeError: CUDA error: device-side assert triggered",
            "RuntimeError",
            "CUDA error: device-side assert triggered",
            None,
        ),
        ("it dies with `Segmentation fault (core dumped)`", "Segmentation fault", "", None),
        (
            "libc++abi: terminating with uncaught exception of type std::bad_alloc: std::bad_alloc",
            "std::bad_alloc",
            "std::bad_alloc",
            None,
        ),
    ],
)
def test_crash_lines(line: str, exc_type: str, message: str, file: str | None) -> None:
    (tb,) = find_tracebacks(f"some log\n{line}\nmore log")
    assert (tb.exc_type, tb.message) == (exc_type, message)
    assert (tb.frames[0].file if tb.frames else None) == file


def test_no_traceback() -> None:
    assert find_tracebacks("It works, but slowly. Error handling is fine.") == []
    assert error_signature("no failure here") is None
    assert error_signature(None) is None


@pytest.mark.parametrize(
    ("message", "normalised"),
    [
        (
            "CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 79.15 GiB total capacity)",
            "CUDA out of memory. Tried to allocate <SIZE> (GPU <N>; <SIZE> total capacity)",
        ),
        (
            "The size of tensor a (462) must match the size of tensor b (448) at dimension 1",
            "The size of tensor a (<N>) must match the size of tensor b (<N>) at dimension <N>",
        ),
        (
            "shape torch.Size([2, 3]) vs [4, 5, 6] and (7, 8)",
            "shape <SHAPE> vs <SHAPE> and <SHAPE>",
        ),
        ("segfault at 0x7f3a2b1c in worker", "segfault at <HEX> in worker"),
        (
            "No such file or directory: '/home/u/.cache/x.json'",
            "No such file or directory: '<PATH>'",
        ),
        ("KeyError: 'input_ids'", "KeyError: <STR>"),
        ("request 123e4567-e89b-12d3-a456-426614174000 failed", "request <UUID> failed"),
        ("at commit 21be9cab94e0b5b53cb6edeeebf8c8c799baad03", "at commit <HASH>"),
        ("Couldn't reach https://huggingface.co/x/y.json", "Couldn't reach <URL>"),
        (
            "Qwen2ForConditionalGeneration is   not\nsupported",
            "Qwen2ForConditionalGeneration is not supported",
        ),
    ],
)
def test_normalise_message(message: str, normalised: str) -> None:
    assert normalise_message(message) == normalised


def test_signature_groups_the_same_failure() -> None:
    head = "Traceback (most recent call last):\n"
    one = f'{head}  File "/a/site-packages/torch/x.py", line 1, in f\n'
    one += "torch.cuda.OutOfMemoryError: Tried to allocate 2.00 GiB on GPU 0"
    two = f'{head}  File "C:\\env\\Lib\\site-packages\\torch\\x.py", line 9, in f\n'
    two += "torch.OutOfMemoryError: Tried to allocate 512.00 MiB on GPU 3"
    assert error_signature(one) == error_signature(two)
    assert error_signature(one) != error_signature(one.replace("in f", "in g"))


def test_cut_log_keeps_head_traceback_and_tail() -> None:
    traceback = "Traceback (most recent call last):\n"
    traceback += '  File "x.py", line 1, in f\nValueError: the root cause\n'
    text = "HEAD line\n" + "noise\n" * 5000 + traceback + "noise\n" * 5000 + "TAIL line"
    cut = cut_log(text, 2000)
    assert len(cut) <= 2000
    assert cut.startswith("HEAD line") and cut.endswith("TAIL line")
    assert traceback in cut
    cut_counts = [
        int(n.replace(",", "")) for n in re.findall(r"\[\.\.\. ([\d,]+) characters cut", cut)
    ]
    assert len(cut) - sum(len(m) for m in re.findall(r"\n\[\.\.\. .*? cut \.\.\.\]\n", cut)) + sum(
        cut_counts
    ) == len(text)
    assert cut_log("short", 100) == "short"
    assert len(cut_log(text, 50)) <= 50 and "cut" in cut_log(text, 80)


def test_cut_log_clips_a_huge_traceback_to_its_end() -> None:
    frames = "".join(f'  File "m{i}.py", line {i}, in f{i}\n    x()\n' for i in range(3000))
    text = f"start\nTraceback (most recent call last):\n{frames}KeyError: 'last'\nend"
    cut = cut_log(text, 3000)
    assert len(cut) <= 3000 and "KeyError: 'last'" in cut and cut.startswith("start")


# --- environment ----------------------------------------------------------------------------


def test_environment_from_collect_env() -> None:
    env = parse_environment(fixture("vllm_4655_collect_env.md"))
    assert (env.python, env.torch, env.cuda) == ("3.10.0", "2.3.0+cu121", "12.1")
    assert env.os == "Ubuntu 22.04.4 LTS (x86_64)"
    assert env.gpus == ("NVIDIA A100 80GB PCIe",) * 4
    assert env.project_versions["vllm"] == "0.4.2"
    assert summary(env).startswith("Python 3.10.0, torch 2.3.0+cu121, CUDA 12.1, vllm 0.4.2")
    assert "4x NVIDIA A100 80GB PCIe, Ubuntu 22.04.4 LTS (x86_64)" in summary(env)


@pytest.mark.parametrize(
    ("text", "field", "value"),
    [
        ("- `datasets` version: 2.14.0\n- Python version: 3.9", "python", "3.9"),
        ("- `datasets` version: 2.14.0", "project_versions", {"datasets": "2.14.0"}),
        ("datasets version: 2.14.0", "project_versions", {"datasets": "2.14.0"}),
        ("- Huggingface_hub version: 0.16.4", "project_versions", {"huggingface-hub": "0.16.4"}),
        ("llama.cpp build 1234 (abcdef0)", "project_versions", {"llama.cpp": "b1234"}),
        ("version: b3456", "project_versions", {"llama.cpp": "b3456"}),
        ("main: build = 1883 (122ed484)", "project_versions", {"llama.cpp": "b1883"}),
        ("build: ba68309d (3163)", "project_versions", {"llama.cpp": "b3163"}),
        ("main: build = 0 (unknown)", "project_versions", {}),
        ("[pip3] torch==2.1.2\n[pip3] transformers==4.40.0", "torch", "2.1.2"),
        (
            "[pip3] torch==2.1.2\n[pip3] transformers==4.40.0",
            "project_versions",
            {"transformers": "4.40.0"},
        ),
        ("PyTorch version: 2.1.2+cu118", "cuda", "11.8"),
        ("CUDA runtime version: 12.1.105\nCUDA used to build PyTorch: 12.1", "cuda", "12.1.105"),
        (
            "CUDA runtime version: Could not collect\nCUDA used to build PyTorch: 12.4",
            "cuda",
            "12.4",
        ),
        ("- PyTorch version (GPU?): 1.9.0+cu102 (True)", "torch", "1.9.0+cu102"),
        (
            "Python version: 3.10.12 (main, Nov 20 2023) [GCC 11.4.0] (64-bit runtime)",
            "python",
            "3.10.12",
        ),
        (
            "GPU models and configuration: GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1)",
            "gpus",
            ("NVIDIA H100 80GB HBM3",),
        ),
        (
            "  Device 0: NVIDIA GeForce RTX 3090, compute capability 8.6, VMM: yes",
            "gpus",
            ("NVIDIA GeForce RTX 3090",),
        ),
        ("### What operating system are you seeing the problem on?\n\nLinux\n", "os", "Linux"),
        ("- Platform: macOS-13.4-arm64-arm-64bit", "os", "macOS-13.4-arm64-arm-64bit"),
        ("OS: Could not collect", "os", None),
    ],
)
def test_environment_lines(text: str, field: str, value: object) -> None:
    assert getattr(parse_environment(text), field) == value


def test_environment_of_other_fixtures() -> None:
    llama = parse_environment(fixture("llamacpp_4977_ggml_assert.md"))
    assert llama.project_versions == {"llama.cpp": "b1883"}
    datasets = parse_environment(fixture("datasets_2600_issue.md"))
    assert (datasets.python, datasets.project_versions["datasets"]) == ("3.8.10", "1.9.0")
    assert summary(parse_environment(None)) == "" == summary(Environment())
    hash(parse_environment(fixture("vllm_4655_collect_env.md")))


# --- models ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "models"),
    [
        (
            "--model meta-llama/Llama-2-7b-hf --tokenizer meta-llama/Llama-2-7b-hf",
            ("meta-llama/Llama-2-7b-hf", "llama"),
        ),
        (
            "https://huggingface.co/TheBloke/Mixtral-8x7B-v0.1-GGUF/resolve/main/m.gguf",
            ("TheBloke/Mixtral-8x7B-v0.1-GGUF", "mixtral"),
        ),
        ("LlamaForCausalLM, Qwen2ForCausalLM and TinyLlama", ("llama", "qwen")),
        ("llama.cpp and llama-cpp-python, built from ggerganov/llama.cpp", ()),
        ("see vllm/model_executor/layers/linear.py and huggingface/transformers#123", ()),
        ("and/or 10 tokens/s, 3 it/s, N/A, HTTP/1.1, A100/A800, fp16/bf16", ()),
        ("https://github.com/vllm-project/vllm/issues/1 and pytorch/pytorch", ()),
        (
            "load_dataset('lhoestq/demo1') then gpt2 and GPT-2 and bert-base-uncased",
            ("gpt2", "bert"),
        ),
        (
            "Phi-3 vs philosophy, deepseek-ai/DeepSeek-V3 and google/flan-t5-base",
            ("phi", "deepseek-ai/DeepSeek-V3", "deepseek", "google/flan-t5-base", "t5"),
        ),
        (None, ()),
    ],
)
def test_find_models(text: str | None, models: tuple[str, ...]) -> None:
    assert find_models(text) == models


def test_models_of_real_bodies() -> None:
    vllm = find_models(fixture("vllm_4655_collect_env.md"))
    assert vllm[0] == "ibm-granite/granite-34b-code-instruct"
    assert (
        find_models(fixture("llamacpp_4977_ggml_assert.md"))[0]
        == "ikawrakow/various-2bit-sota-gguf"
    )


# --- links ----------------------------------------------------------------------------------

REPO = "huggingface/datasets"


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("Fixes #1, #2 and #3", [(REPO, 1), (REPO, 2), (REPO, 3)]),
        ("fixes #1 and fixes #2", [(REPO, 1), (REPO, 2)]),
        ("CLOSES: #5. Resolved #6", [(REPO, 5), (REPO, 6)]),
        ("This should fix issue #9", [(REPO, 9)]),
        ("fix (#619) names", [(REPO, 619)]),
        ("resolves huggingface/transformers#77", [("huggingface/transformers", 77)]),
        ("Fixes HuggingFace/Datasets#8", [(REPO, 8)]),
        (
            "Fix https://github.com/huggingface/datasets/issues/10 and https://github.com/o/r/issues/11",
            [(REPO, 10), ("o/r", 11)],
        ),
        ("Close [#12](https://github.com/huggingface/datasets/issues/12)", [(REPO, 12)]),
        ("prefix #3, hotfix #4, fixed in #5, related to #6, a fix for #7", []),
        ("Fixes #1 #1 #1", [(REPO, 1)]),
        ("fix #99999999999999", []),
        (None, []),
    ],
)
def test_fixed_issues(text: str | None, numbers: list[tuple[str, int]]) -> None:
    assert fixed_issues(text, REPO) == tuple(IssueRef(r, n) for r, n in numbers)


def test_fixing_pr_of_a_real_issue() -> None:
    assert fixed_issues(fixture("datasets_2601_fix_pr.md"), REPO) == (IssueRef(REPO, 2600),)


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("Duplicate of #7", IssueRef(REPO, 7)),
        ("duplicate of https://github.com/o/r/issues/8", IssueRef("o/r", 8)),
        ("This is a duplicate of: #9 I think", IssueRef(REPO, 9)),
        ("not a duplicate", None),
    ],
)
def test_duplicate_of(text: str, ref: IssueRef | None) -> None:
    assert duplicate_of(text, REPO) == ref


# --- robustness -----------------------------------------------------------------------------

NATIVE_CRASHES = {
    "Segmentation fault",
    "Illegal instruction",
    "Bus error",
    "Floating point exception",
}
"""Crash kinds named after the signal, which the text may only give as ``SIGSEGV`` and the like."""
HEADING_LINE = re.compile(r"^ {0,3}#{1,3}[ \t]+\S")
NO_RESPONSE = re.compile(r"\s*_No response_\s*", re.IGNORECASE)
CUT_MARK = re.compile(r"\n\[\.\.\. ([\d,]+) characters cut \.\.\.\]\n")


def flat(text: str) -> str:
    """``text`` with the line breaks the parsers read it with."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def without_comments(text: str) -> str:
    """The oracle: from each ``<!--``, up to the first ``-->`` after it, goes."""
    kept, pos = [], 0
    while (start := text.find("<!--", pos)) >= 0 and (end := text.find("-->", start + 4)) >= 0:
        kept.append(text[pos:start])
        pos = end + 3
    return "".join(kept) + text[pos:]


def comments_go_and_nothing_else(text: str) -> None:
    """Every complete comment goes, an unterminated one stays, and nothing else changes."""
    assert strip_html_comments(text) == without_comments(text)


def sections_keep_every_line(text: str) -> None:
    """Every line lands in a section (headings become keys, ``_No response_`` goes), and a
    section holds nothing that is not a line of the text."""
    sections = split_sections(text)
    source = flat(strip_html_comments(text)).split("\n")
    kept = {line.strip() for value in sections.values() for line in value.split("\n")}
    assert kept - {""} <= {line.strip() for line in source}
    for line in source:
        if line.strip() and not HEADING_LINE.match(line) and not NO_RESPONSE.fullmatch(line):
            assert line.strip() in kept, line
    for key, value in sections.items():
        assert key and key == heading_key(key) and value == value.strip()


def clean_body_keeps_only_lines_of_the_text(text: str) -> None:
    """A cleaned body is lines of the text, without blank-line runs, and cleaning it again
    changes nothing."""
    out = clean_body(text)
    source = {line.strip() for line in flat(strip_html_comments(text)).split("\n")}
    assert {line.strip() for line in out.split("\n")} - {""} <= source
    assert out == out.strip() and "\n\n\n" not in out
    assert clean_body(out) == out


def tracebacks_come_from_the_text(text: str) -> None:
    """Types, messages and frames are read from the text; a signature exactly when a failure."""
    found = find_tracebacks(text)
    source = flat(text)
    assert len(set(found)) == len(found)
    for tb in found:
        assert tb.exc_type in source or tb.exc_type in NATIVE_CRASHES, tb
        assert tb.message in source, tb
        for frame in tb.frames:
            assert frame.file in source and frame.func in source, frame
    signature = error_signature(text)
    assert (signature is None) == (not found)
    assert signature is None or "\n" not in signature


def messages_normalise_to_one_short_line(text: str) -> None:
    out = normalise_message(text)
    assert len(out) <= 300 and "\n" not in out and "  " not in out


def cut_logs_fit_and_account_for_every_character(text: str) -> None:
    """A long log is cut to the budget; kept pieces are the text's, and kept plus the counts
    the marks announce is the whole text."""
    out = cut_log(text, 200)
    if len(text) <= 200:
        assert out == text
        return
    assert len(out) <= 200
    pieces, cuts = CUT_MARK.split(out)[::2], CUT_MARK.findall(out)
    assert cuts and all(piece in flat(text) for piece in pieces)
    assert sum(map(len, pieces)) + sum(int(n.replace(",", "")) for n in cuts) == len(flat(text))


def environment_is_read_from_the_text(text: str) -> None:
    """Every version, GPU and OS is written in the text; the summary is empty only when the
    environment is, and names what is known."""
    env = parse_environment(text)
    source = flat(text)
    for value in (env.python, env.torch, *env.gpus):
        assert value is None or value in source, value
    assert env.os is None or env.os in source or env.os in flat(strip_html_comments(text))
    assert env.cuda is None or env.cuda in source or f"cu{env.cuda.replace('.', '')}" in env.torch
    for version in env.project_versions.values():
        assert version.removeprefix("b") in source, version  # llama.cpp builds read b1234
    line = summary(env)
    assert (line == "") == (env == Environment())
    assert all(value in line for value in (env.python, env.torch, env.cuda, env.os) if value)


def models_are_named_in_the_text(text: str) -> None:
    """Ids are spelt as in the text, families come from a word of it, none twice."""
    found = find_models(text)
    assert len({m.lower() for m in found}) == len(found)
    for model in found:
        if "/" in model:
            assert model in text
        else:
            assert any(k in text.lower() for k, v in FAMILIES.items() if v == model), model


def links_name_numbers_written_in_the_text(text: str) -> None:
    """Linked issues are numbers of the text, after a keyword it holds, each once."""
    refs = fixed_issues(text, REPO)
    assert len(set(refs)) == len(refs)
    if not re.search(r"fix|close|resolve", text, re.IGNORECASE):
        assert refs == ()
    dup = duplicate_of(text, REPO)
    assert dup is None or "duplicate" in text.lower()
    for ref in (*refs, dup):
        if ref:
            assert str(ref.number) in text and (ref.repo == REPO or ref.repo in text), ref


CONTRACTS = (
    comments_go_and_nothing_else,
    sections_keep_every_line,
    clean_body_keeps_only_lines_of_the_text,
    tracebacks_come_from_the_text,
    messages_normalise_to_one_short_line,
    cut_logs_fit_and_account_for_every_character,
    environment_is_read_from_the_text,
    models_are_named_in_the_text,
    links_name_numbers_written_in_the_text,
)
"""What each parser promises about any text; ``test_reliability_fuzz`` checks them too."""
FRAGMENTS = st.sampled_from(
    [
        "Traceback (most recent call last):\n",
        '  File "/x/site-packages/vllm/a.py", line 3, in f\n',
        "ValueError: bad 0x7f 12\n",
        "    code()\n",
        "### Heading\n",
        "```\n",
        "<!-- c -->",
        "_No response_\n",
        "GGML_ASSERT(x) failed\n",
        "PyTorch version: 2.1.2+cu121\n",
        "GPU 0: A100\n",
        "meta-llama/Llama-2-7b-hf ",
        "Fixes #12, #",
        "> ",
        "\r\n",
        "AssertionError                            Traceback (most recent call last)\n",
    ]
)
TEXTS = st.one_of(st.text(), st.lists(st.one_of(FRAGMENTS, st.text(max_size=8))).map("".join))


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.__name__)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXTS)
def test_parsers_keep_their_contract_on_any_text(contract, text: str) -> None:
    contract(text)


# --- the real data --------------------------------------------------------------------------


def bodies(name: str) -> list[dict]:
    """Every row of a shared data file (skipping the test when the file is absent)."""
    with gzip.open(shared_file(f"github/{name}"), "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def shared_rows() -> dict[str, list[dict]]:
    return {
        "vllm": bodies("vllm.issues-sample.jsonl.gz"),
        "llama.cpp": bodies("llama.cpp.issues-sample.jsonl.gz"),
        "datasets": bodies("huggingface-datasets.issues.jsonl.gz"),
    }


def test_parsers_over_every_shared_body(shared_rows: dict[str, list[dict]]) -> None:
    signatures: Counter[str] = Counter()
    envs: dict[str, list[Environment]] = {}
    for project, rows in shared_rows.items():
        envs[project] = []
        for row in rows:
            body = row["body"]
            clean_body(body)
            cut_log(body, 4000)
            envs[project].append(parse_environment(body))
            find_models(f"{row['title']}\n{body or ''}")
            signatures[error_signature(body) or ""] += 1
    assert sum(env.torch is not None for env in envs["vllm"]) > 250
    assert sum("vllm" in env.project_versions for env in envs["vllm"]) > 250
    assert sum("llama.cpp" in env.project_versions for env in envs["llama.cpp"]) > 250
    assert sum("datasets" in env.project_versions for env in envs["datasets"]) > 600
    shared = {sig: n for sig, n in signatures.items() if sig and n > 1}
    assert len(shared) > 100 and sum(shared.values()) > 400


def test_fixed_issues_over_datasets_prs(shared_rows: dict[str, list[dict]]) -> None:
    rows = shared_rows["datasets"]
    issues = {r["number"] for r in rows if not r.get("pull_request") and r["state"] == "closed"}
    linked = set()
    for row in rows:
        if (row.get("pull_request") or {}).get("merged_at"):
            refs = fixed_issues(f"{row['title']}\n{row['body'] or ''}", REPO)
            linked |= {ref.number for ref in refs if ref.repo == REPO} & issues
    assert len(linked) > 600
