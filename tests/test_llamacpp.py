"""llama.cpp generation: PEFT → GGUF LoRA conversion, agreement with transformers, hot swaps.

The conversion tests read the real base GGUF's header only (fast). The ``slow`` tests load the
real default model in both engines and compare the logit *change* an adapter causes: top-1 alone
hides a wrong q/k row order (it looks almost right).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from adaptune.errors import RegistryError
from adaptune.generate.gguf_lora import convert, permute_rows
from tiny_lora import ignore_peft_warning

HAS_LLAMA = importlib.util.find_spec("llama_cpp") is not None
needs_llama = pytest.mark.skipif(
    not HAS_LLAMA, reason="llama-cpp-python is not installed (pip install 'adaptune[llamacpp]')"
)
os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # before llama.cpp's OpenMP starts
pytestmark = ignore_peft_warning

WIDTH, HEADS, KV_HEADS, HEAD_DIM = 576, 9, 3, 64
QUESTIONS = [
    "load_dataset('json') fails with ArrowInvalid on a column of mixed types",
    "map() with num_proc hangs on macOS with Python 3.11",
    "CUDA out of memory when loading a 7B model with vllm serve",
    "llama-server crashes with GGML_ASSERT when the context is full",
    "How do I push a dataset with a custom config name to the Hub?",
    "Tokenizer warning about truncation when batching long texts",
]
CONTEXT = (("Dataset.map slow with many processes", "Use batched=True and a larger batch."),)


@pytest.fixture(scope="module")
def base_gguf() -> Path:
    from adaptune.generate.llamacpp import default_gguf

    try:
        return default_gguf()
    except Exception as exc:
        pytest.skip(f"the default GGUF is not installed: {exc}")


def write_peft(folder: Path, tensors: dict[str, np.ndarray], **config: object) -> Path:
    """A PEFT adapter folder with the given tensors and config entries."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    cfg = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "bias": "none", **config}
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    return folder


def synthetic(r: int = 4, layers: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    """Random LoRA tensors with SmolLM2-135M's shapes on q, k, v, o of the first layers."""
    rng = np.random.default_rng(seed)
    outs = {"q_proj": WIDTH, "k_proj": KV_HEADS * HEAD_DIM, "v_proj": 192, "o_proj": WIDTH}
    tensors = {}
    for layer in range(layers):
        for module, out in outs.items():
            key = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            tensors[f"{key}.lora_A.weight"] = rng.normal(size=(r, WIDTH)).astype(np.float32)
            tensors[f"{key}.lora_B.weight"] = rng.normal(size=(out, r)).astype(np.float32)
    return tensors


def read_gguf(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    fields = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    return fields, {t.name: np.array(t.data) for t in reader.tensors}


def test_permute_rows_splits_each_heads_rotary_halves() -> None:
    rows = np.arange(8)
    assert permute_rows(rows, 2).tolist() == [0, 2, 1, 3, 4, 6, 5, 7]
    assert permute_rows(np.arange(4).reshape(4, 1), 1)[:, 0].tolist() == [0, 2, 1, 3]


def test_convert_writes_llama_cpp_adapter(tmp_path: Path, base_gguf: Path) -> None:
    tensors = synthetic()
    adapter = write_peft(tmp_path / "peft", tensors, r=4, lora_alpha=8)
    out = convert(adapter, base_gguf, tmp_path / "out" / "a.gguf")

    fields, written = read_gguf(out)
    assert fields["general.type"] == "adapter" and fields["adapter.type"] == "lora"
    assert fields["general.architecture"] == "llama" and fields["adapter.lora.alpha"] == 8.0
    assert len(written) == len(tensors) == 16
    peft = "base_model.model.model.layers.1.self_attn"
    q_b, k_b = tensors[f"{peft}.q_proj.lora_B.weight"], tensors[f"{peft}.k_proj.lora_B.weight"]
    np.testing.assert_array_equal(written["blk.1.attn_q.weight.lora_b"], permute_rows(q_b, 9))
    np.testing.assert_array_equal(written["blk.1.attn_k.weight.lora_b"], permute_rows(k_b, 3))
    assert not np.array_equal(written["blk.1.attn_q.weight.lora_b"], q_b)
    for name, module in (("attn_v", "v_proj"), ("attn_output", "o_proj")):
        key = f"{peft}.{module}.lora_B.weight"
        np.testing.assert_array_equal(written[f"blk.1.{name}.weight.lora_b"], tensors[key])
    a = tensors[f"{peft}.q_proj.lora_A.weight"]
    np.testing.assert_array_equal(written["blk.1.attn_q.weight.lora_a"], a)
    assert sorted(p.name for p in out.parent.iterdir()) == ["a.gguf"]  # no temp file left


def test_rslora_alpha_gives_the_same_scale(tmp_path: Path, base_gguf: Path) -> None:
    adapter = write_peft(tmp_path / "peft", synthetic(r=4), r=4, lora_alpha=8, use_rslora=True)
    fields, _ = read_gguf(convert(adapter, base_gguf, tmp_path / "a.gguf"))
    # llama.cpp scales by alpha / r; rsLoRA by alpha / sqrt(r).
    assert math.isclose(fields["adapter.lora.alpha"] / 4, 8 / math.sqrt(4), rel_tol=1e-6)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"config": {"use_dora": True}}, "DoRA"),
        ({"config": {"modules_to_save": ["lm_head"]}}, "modules_to_save"),
        ({"config": {"bias": "lora_only"}}, "without biases"),
        ({"tensor": "base_model.model.lm_head.lora_A.weight"}, "targets a module"),
        ({"width": 100}, "width 100"),
    ],
)
def test_convert_refuses_what_llama_cpp_cannot_apply(
    tmp_path: Path, base_gguf: Path, change: dict, message: str
) -> None:
    tensors = synthetic(layers=1)
    if "tensor" in change:
        tensors[change["tensor"]] = np.zeros((4, WIDTH), np.float32)
    if "width" in change:
        key = "base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight"
        tensors[key] = np.zeros((4, change["width"]), np.float32)
    adapter = write_peft(tmp_path / "peft", tensors, **change.get("config", {}))
    with pytest.raises(RegistryError, match=message):
        convert(adapter, base_gguf, tmp_path / "out" / "a.gguf")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_convert_refuses_other_architectures(tmp_path: Path) -> None:
    from gguf import GGUFWriter

    writer = GGUFWriter(str(tmp_path / "base.gguf"), "gpt2")
    writer.add_block_count(1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    adapter = write_peft(tmp_path / "peft", synthetic(layers=1))
    with pytest.raises(RegistryError, match="'gpt2' model"):
        convert(adapter, tmp_path / "base.gguf", tmp_path / "a.gguf")
    with pytest.raises(RegistryError, match="does not exist"):
        convert(adapter, tmp_path / "missing.gguf", tmp_path / "a.gguf")


def test_export_gguf_writes_the_converted_adapter(store, tmp_path: Path, base_gguf: Path) -> None:
    from adaptune.registry import export, register
    from adaptune.store.domains import add_domain
    from adaptune.train.model import DEFAULT_ID

    with store.begin() as conn:
        add_domain(conn, "alpha")
    source = write_peft(tmp_path / "peft", synthetic(layers=1))
    default = register(store, "alpha", source, strategy="from-base", base_model=DEFAULT_ID)
    other = register(store, "alpha", source, strategy="from-base", base_model="org/other")

    out = export(store, default.version, tmp_path / "gguf", format="gguf")
    fields, tensors = read_gguf(out / "adapter.gguf")
    assert fields["adapter.type"] == "lora" and len(tensors) == 8
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["version"] == default.version and manifest["export"]["format"] == "gguf"
    with pytest.raises(RegistryError, match="--base-gguf"):
        export(store, other.version, tmp_path / "other", format="gguf")
    out = export(store, other.version, tmp_path / "other", format="gguf", base_gguf=base_gguf)
    assert (out / "adapter.gguf").exists()


def test_service_picks_llama_cpp_for_a_gguf_when_installed(store) -> None:
    from adaptune.generate.llamacpp import LlamaCppGenerator
    from adaptune.generate.local import LocalGenerator
    from adaptune.serve import serve_settings
    from adaptune.serve.app import default_generator

    auto = default_generator(serve_settings(), store)
    assert isinstance(auto, LlamaCppGenerator if HAS_LLAMA else LocalGenerator)
    assert not auto.ready()  # nothing loads before the service warms up
    explicit = default_generator(serve_settings(generator="llamacpp"), store)
    assert isinstance(explicit, LlamaCppGenerator)
    hf_folder = default_generator(serve_settings(model="/models/some-llama"), store)
    assert isinstance(hf_folder, LocalGenerator)
    forced = default_generator(serve_settings(generator="transformers"), store)
    assert isinstance(forced, LocalGenerator)


# --- the real default model in both engines (slow) ---------------------------------------------


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory, base_gguf: Path) -> dict:
    """The default model (transformers), its tokenizer, two PEFT adapters and their GGUFs."""
    if not HAS_LLAMA:
        pytest.skip("llama-cpp-python is not installed (pip install 'adaptune[llamacpp]')")
    from adaptune.generate.prompt import prompt_ids
    from adaptune.train.model import load_base

    home = tmp_path_factory.mktemp("llamacpp-home")
    model, tok, _ = load_base(None, home)
    model.eval()
    adapters = {name: make_adapter(model, home / "peft" / name, seed) for name, seed in AB}
    prompts = [
        prompt_ids(tok, q, CONTEXT if i % 2 else (), None, 512) for i, q in enumerate(QUESTIONS)
    ]
    return {"home": home, "model": model, "tok": tok, "adapters": adapters, "prompts": prompts}


AB = (("v0001", 1), ("v0002", 2))


def make_adapter(model: object, folder: Path, seed: int) -> Path:
    """A LoRA on q, k, v, o with random A and B that changes the answers visibly.

    The change must stand well above llama.cpp's own rounding (it quantises activations to 8
    bits): with B scaled to 1/4 the logit-change correlation falls to 0.92 even when right.
    """
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        init_lora_weights=False,
    )
    peft = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_B" in name:
                param.mul_(LORA_B_SCALE)
    peft.save_pretrained(folder)
    peft.unload()  # the shared base model gets its plain layers back
    return folder


LORA_B_SCALE = 1.0


def hf_logits(real: dict, adapter: Path | None) -> list[np.ndarray]:
    """transformers logits for every prompt, with the PEFT adapter or the base model."""
    import torch
    from peft import PeftModel

    model = real["model"]
    peft = PeftModel.from_pretrained(model, str(adapter)) if adapter else None
    try:
        with torch.inference_mode():
            return [
                (peft or model)(torch.tensor([ids])).logits[0].float().numpy()
                for ids in real["prompts"]
            ]
    finally:
        if peft is not None:
            peft.unload()


def fresh_logits(real: dict, base_gguf: Path, lora: Path | None, ids: list[int]) -> np.ndarray:
    """Logits from a newly loaded llama.cpp model with the GGUF LoRA applied at load time."""
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(base_gguf),
        lora_path=str(lora) if lora else None,
        n_ctx=512,
        n_threads=2,
        logits_all=True,
        verbose=False,
    )
    try:
        llm.eval(ids)
        return np.array(llm.scores[: len(ids)], dtype=np.float32)
    finally:
        llm.close()


def generator(real: dict, **kwargs: object) -> object:
    from adaptune.generate.llamacpp import LlamaCppGenerator

    kwargs = {"logits_all": True, "max_len": 512, **kwargs}
    return LlamaCppGenerator(home=real["home"], tokenizer=real["tok"], n_threads=2, **kwargs)


def next_tokens(logits: list[np.ndarray]) -> np.ndarray:
    """The greedy next token after each prompt."""
    return np.array([row[-1].argmax() for row in logits])


def pairs(a: list, b: list) -> zip:
    return zip(a, b, strict=True)


def delta_correlation(hf: tuple, ll: tuple) -> list[float]:
    """Per prompt: correlation of (adapter − base) logits between the engines, all positions."""
    return [
        float(np.corrcoef((a - b).ravel(), (c - d).ravel())[0, 1])
        for a, b, c, d in zip(*hf, *ll, strict=True)
    ]


@pytest.mark.slow
@needs_llama
def test_converted_adapter_changes_logits_like_peft(real: dict, base_gguf: Path) -> None:
    path = real["adapters"]["v0001"]
    hf_base, hf_lora = hf_logits(real, None), hf_logits(real, path)
    gen = generator(real)
    ll_base = [gen.logits(ids) for ids in real["prompts"]]
    ll_lora = [gen.logits(ids, "v0001", path) for ids in real["prompts"]]

    # The adapter visibly changes the greedy tokens (base vs adapter, in transformers).
    moved = np.concatenate([b.argmax(-1) != a.argmax(-1) for b, a in pairs(hf_base, hf_lora)])
    assert moved.mean() >= 0.1
    assert (next_tokens(hf_lora) == next_tokens(ll_lora)).all()
    every = np.concatenate([h.argmax(-1) == c.argmax(-1) for h, c in pairs(hf_lora, ll_lora)])
    assert every.mean() >= 0.9
    right = delta_correlation((hf_lora, hf_base), (ll_lora, ll_base))
    assert min(right) >= 0.98, right

    # Without the q/k row permutation the adapter loads and looks plausible, but is wrong.
    unpermuted = convert(path, base_gguf, real["home"] / "unpermuted.gguf", permute=False)
    ll_wrong = [fresh_logits(real, base_gguf, unpermuted, ids) for ids in real["prompts"]]
    wrong = delta_correlation((hf_lora, hf_base), (ll_wrong, ll_base))
    assert max(wrong) < 0.9, wrong


@pytest.mark.slow
@needs_llama
def test_hot_swaps_give_the_logits_of_fresh_loads(real: dict, base_gguf: Path) -> None:
    from adaptune.generate import Request

    a, b = real["adapters"]["v0001"], real["adapters"]["v0002"]
    ids = real["prompts"][1]
    gen = generator(real, keep=1)
    first_a = gen.logits(ids, "v0001", a)
    swapped_b = gen.logits(ids, "v0002", b)
    # A generation with B fills the KV cache with the same prompt prefix; it must not leak.
    gen.generate(Request(QUESTIONS[1], CONTEXT, adapter_version="v0002", adapter_path=b))
    again_a = gen.logits(ids, "v0001", a)
    base = gen.logits(ids)

    cached = sorted(p.name for p in (real["home"] / "cache" / "gguf").iterdir())
    assert [name.split("-")[0] for name in cached] == ["v0001", "v0002"]
    gguf_a, gguf_b = (real["home"] / "cache" / "gguf" / name for name in cached)
    np.testing.assert_allclose(first_a, fresh_logits(real, base_gguf, gguf_a, ids), atol=1e-3)
    np.testing.assert_allclose(swapped_b, fresh_logits(real, base_gguf, gguf_b, ids), atol=1e-3)
    np.testing.assert_allclose(base, fresh_logits(real, base_gguf, None, ids), atol=1e-3)
    np.testing.assert_allclose(again_a, first_a, atol=1e-3)
    assert np.abs(first_a - swapped_b).max() > 1.0


@pytest.mark.slow
@needs_llama
def test_generator_answers_like_transformers(real: dict) -> None:
    from adaptune.generate import Request
    from adaptune.generate.local import LocalGenerator

    path = real["adapters"]["v0001"]
    fast = generator(real, logits_all=False, max_len=1024)
    fast.preload("v0001", path)
    slow = LocalGenerator(real["model"], real["tok"], home=real["home"])
    asks = [Request(QUESTIONS[0], CONTEXT, max_new_tokens=12)]
    asks.append(Request(QUESTIONS[0], CONTEXT, None, "v0001", path, max_new_tokens=12))
    answers = [fast.generate(r) for r in asks]
    try:
        expected = [slow.generate(r) for r in asks]
    finally:
        if slow._peft is not None:  # give the shared base model its plain layers back
            slow._peft.unload()
    assert answers[0].text != answers[1].text  # the adapter is in use
    assert all(0 < a.tokens <= 12 for a in answers)
    # Greedy decoding follows the same path until a near-tie (the engines round differently).
    assert [a.text.split()[:5] for a in answers] == [e.text.split()[:5] for e in expected]
    assert fast.ready() and fast.name == "llamacpp"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.e2e
@needs_llama
def test_openai_generator_against_llama_cpp_server(
    real: dict, base_gguf: Path, tmp_path: Path
) -> None:
    """``python -m llama_cpp.server`` with the base and one adapter, each as a model name."""
    from adaptune.generate import Request
    from adaptune.generate.openai import OpenAIGenerator

    pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server]")
    path = real["adapters"]["v0001"]
    lora = convert(path, base_gguf, tmp_path / "v0001.gguf")
    port = free_port()
    common = {"model": str(base_gguf), "n_ctx": 2048, "n_threads": 2, "verbose": False}
    config = {
        "host": "127.0.0.1",
        "port": port,
        "models": [
            {**common, "model_alias": "base"},
            {**common, "model_alias": "v0001", "lora_path": str(lora)},
        ],
    }
    (tmp_path / "server.json").write_text(json.dumps(config))
    env = {**_server_env(), "OMP_WAIT_POLICY": "passive"}
    cmd = [sys.executable, "-m", "llama_cpp.server", "--config_file", str(tmp_path / "server.json")]
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        client = OpenAIGenerator(f"http://127.0.0.1:{port}/v1", "base")
        deadline = time.monotonic() + 120
        while not client.ready():
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "llama_cpp.server did not start in 120 s"
            time.sleep(0.5)
        base = client.generate(Request(QUESTIONS[0], CONTEXT, max_new_tokens=12))
        tuned = client.generate(Request(QUESTIONS[0], CONTEXT, None, "v0001", max_new_tokens=12))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    local = generator(real, logits_all=False, max_len=1024)
    expected = [
        local.generate(Request(QUESTIONS[0], CONTEXT, max_new_tokens=12)),
        local.generate(Request(QUESTIONS[0], CONTEXT, None, "v0001", path, max_new_tokens=12)),
    ]
    assert base.text and tuned.text and base.text != tuned.text
    assert 0 < base.tokens <= 12 and 0 < tuned.tokens <= 12
    assert [base.text, tuned.text] == [e.text for e in expected]


@pytest.mark.slow
def test_base_gguf_holds_the_permuted_q_k_rows(real: dict, base_gguf: Path) -> None:
    """The fact the q/k permutation rests on: GGUF attn_q/k = permuted HF q/k, v as it is."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    tensors = {t.name: t for t in GGUFReader(str(base_gguf)).tensors}
    layer = real["model"].model.layers[3].self_attn
    for name, module, heads in (
        ("attn_q", "q_proj", 9),
        ("attn_k", "k_proj", 3),
        ("attn_v", "v_proj", 0),
    ):
        hf = getattr(layer, module).weight.detach().numpy()
        t = tensors[f"blk.3.{name}.weight"]
        gguf = dequantize(t.data, t.tensor_type).reshape(hf.shape)
        np.testing.assert_array_equal(gguf, permute_rows(hf, heads) if heads else hf)


def _server_env() -> dict[str, str]:
    """The environment without variables llama_cpp.server's settings would read as their own
    (pydantic-settings maps e.g. CACHE, MODEL or PORT onto its fields and refuses bad values)."""
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    fields = {*ModelSettings.model_fields, *ServerSettings.model_fields}
    return {k: v for k, v in os.environ.items() if k.lower() not in fields}
