"""PEFT LoRA adapters converted to GGUF LoRA adapters, which llama.cpp applies to a GGUF base.

llama.cpp reads an adapter file with ``general.type = adapter``, ``adapter.type = lora``,
``adapter.lora.alpha`` (without it llama.cpp silently uses scale 1) and the base file's
architecture; each tensor is named after the base tensor it changes
(``blk.{i}.attn_q.weight.lora_a``/``lora_b``) and holds PEFT's ``lora_A``/``lora_B`` as they
are. One catch: llama.cpp's converter permutes the rows of the Llama ``q`` and ``k`` projections
for its rotary embedding, so ``lora_B`` of q and k needs the same permutation (q with the head
count, k with the KV-head count). Without it the adapter loads and looks almost right, but the
change it makes to the logits is wrong.

The llama.cpp generator converts each adapter on first use; ``adapters export --format gguf``
(:mod:`adaptune.registry.export`) writes the same file.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from adaptune.errors import RegistryError
from adaptune.train.lora import CONFIG, WEIGHTS

log = logging.getLogger(__name__)

SUPPORTED_ARCHS = ("llama",)
"""Base architectures whose tensor layout the conversion knows (rows permuted like Llama)."""
SUPPORTED_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""PEFT target modules that map to a GGUF tensor of every transformer block."""

_KEY = re.compile(
    r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.(?P<name>[^.]+))?\.weight$"
)


def convert(
    adapter_dir: Path | str, base_gguf: Path | str, out_path: Path | str, permute: bool = True
) -> Path:
    """Write the PEFT adapter in ``adapter_dir`` as a GGUF LoRA for ``base_gguf`` to ``out_path``.

    The file is written under a temporary name beside ``out_path`` and renamed into place.
    ``permute=False`` skips the q/k row permutation; it exists only to show that it matters.
    Raises :class:`RegistryError` for adapters llama.cpp cannot apply (DoRA, biases, other
    modules, a different base).
    """
    adapter_dir, out_path = Path(adapter_dir), Path(out_path)
    config = _read_config(adapter_dir)
    base = base_shape(Path(base_gguf))
    tensors = _lora_tensors(adapter_dir, base, permute)
    _write(out_path, base["arch"], _alpha(config), tensors)
    log.info("converted %s to %s (%d tensors)", adapter_dir, out_path, len(tensors))
    return out_path


def base_shape(base_gguf: Path) -> dict[str, Any]:
    """Architecture, block count, width and head counts of a GGUF base model."""
    if not base_gguf.is_file():
        raise RegistryError(f"Base model file {base_gguf} does not exist; pass a GGUF file.")
    try:
        fields = read_metadata(base_gguf)
        arch = str(fields["general.architecture"])
    except (OSError, ValueError, KeyError, struct.error) as exc:
        raise RegistryError(f"{base_gguf} is not a readable GGUF model: {exc}") from None
    if arch not in SUPPORTED_ARCHS:
        raise RegistryError(
            f"{base_gguf} is a '{arch}' model; only {', '.join(SUPPORTED_ARCHS)} adapters can "
            "be converted to GGUF. Serve this adapter with transformers or vLLM instead."
        )
    heads = int(fields[f"{arch}.attention.head_count"])
    return {
        "arch": arch,
        "blocks": int(fields[f"{arch}.block_count"]),
        "width": int(fields[f"{arch}.embedding_length"]),
        "heads": heads,
        "kv_heads": int(fields.get(f"{arch}.attention.head_count_kv", heads)),
    }


_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_STRING, _ARRAY = 8, 9


def read_metadata(path: Path) -> dict[str, Any]:
    """The scalar and string key-values of a GGUF header (arrays skipped).

    ``gguf.GGUFReader`` maps every array and tensor into numpy first, which takes seconds for
    a tokenizer's 49,152 tokens; this reads only what the conversion needs.
    """
    with path.open("rb") as fh:
        if fh.read(4) != b"GGUF":
            raise ValueError("no GGUF magic number")
        _version, _tensors, count = struct.unpack("<IQQ", fh.read(20))
        fields: dict[str, Any] = {}
        for _ in range(count):
            key = _read_string(fh)
            (kind,) = struct.unpack("<I", fh.read(4))
            fields[key] = _read_value(fh, kind)
        return fields


def _read_string(fh: BinaryIO) -> str:
    (length,) = struct.unpack("<Q", fh.read(8))
    return fh.read(length).decode("utf-8", errors="replace")


def _read_value(fh: BinaryIO, kind: int) -> Any:
    if kind == _STRING:
        return _read_string(fh)
    if kind == _ARRAY:
        item, n = struct.unpack("<IQ", fh.read(12))
        if item in _SCALARS:
            fh.seek(n * struct.calcsize(_SCALARS[item]), 1)
        else:
            for _ in range(n):
                _read_value(fh, item)
        return None
    fmt = "<" + _SCALARS[kind]
    return struct.unpack(fmt, fh.read(struct.calcsize(fmt)))[0]


def permute_rows(weights: np.ndarray, heads: int) -> np.ndarray:
    """Rows reordered the way llama.cpp's converter reorders a Llama q/k projection.

    Within each head, the interleaved rotary halves become two contiguous halves.
    """
    rows = weights.shape[0]
    return (
        weights.reshape(heads, 2, rows // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _read_config(adapter_dir: Path) -> dict[str, Any]:
    for name in (CONFIG, WEIGHTS):
        if not (adapter_dir / name).exists():
            raise RegistryError(f"{adapter_dir} has no {name}; pass a PEFT LoRA adapter folder.")
    config = json.loads((adapter_dir / CONFIG).read_text())
    refused = {
        "use_dora": "DoRA adapters",
        "modules_to_save": "adapters with fully trained modules (modules_to_save)",
        "alpha_pattern": "per-module alpha (alpha_pattern)",
    }
    for key, what in refused.items():
        if config.get(key):
            raise RegistryError(
                f"{adapter_dir}: llama.cpp cannot apply {what}; retrain without {key} or "
                "serve this adapter with transformers."
            )
    if config.get("peft_type", "LORA") != "LORA" or config.get("bias", "none") != "none":
        raise RegistryError(
            f"{adapter_dir} is not a plain LoRA without biases; only those convert to GGUF."
        )
    return config


def _alpha(config: dict[str, Any]) -> float:
    """``adapter.lora.alpha``: llama.cpp scales by alpha / rank, as PEFT does without rsLoRA."""
    alpha = float(config.get("lora_alpha") or config.get("r", 8))
    if config.get("use_rslora"):
        # PEFT scales by alpha / sqrt(r); alpha·sqrt(r) / r is the same number.
        alpha *= math.sqrt(float(config["r"]))
    return alpha


def _lora_tensors(adapter_dir: Path, base: dict[str, Any], permute: bool) -> dict[str, np.ndarray]:
    """GGUF tensor name → float32 array, q/k ``lora_B`` permuted."""
    from gguf import MODEL_ARCH, MODEL_ARCH_NAMES, get_tensor_name_map
    from safetensors.numpy import load_file

    arch = {name: key for key, name in MODEL_ARCH_NAMES.items()}[base["arch"]]
    names = get_tensor_name_map(MODEL_ARCH(arch), base["blocks"])
    out: dict[str, np.ndarray] = {}
    for key, value in sorted(_load_float(adapter_dir / WEIGHTS, load_file).items()):
        found = _KEY.match(key)
        module = found["module"].rsplit(".", 1)[-1] if found else ""
        gguf_name = names.get_name(found["module"]) if found else None
        if not found or module not in SUPPORTED_MODULES or gguf_name is None:
            raise RegistryError(
                f"{adapter_dir}: tensor {key} targets a module llama.cpp adapters cannot "
                f"change; train with target modules among {', '.join(SUPPORTED_MODULES)}."
            )
        weights = value.astype(np.float32)
        if found["ab"] == "A" and weights.shape[1] != base["width"] and module != "down_proj":
            raise RegistryError(
                f"{adapter_dir}: {key} expects width {weights.shape[1]}, the base GGUF has "
                f"{base['width']}; convert against the base model the adapter was trained on."
            )
        if found["ab"] == "B" and permute and module in ("q_proj", "k_proj"):
            weights = permute_rows(weights, base["heads" if module == "q_proj" else "kv_heads"])
        out[f"{gguf_name}.weight.lora_{found['ab'].lower()}"] = np.ascontiguousarray(weights)
    if not out:
        raise RegistryError(f"{adapter_dir} holds no LoRA tensors; it is not a LoRA adapter.")
    return out


def _load_float(
    path: Path, load_file: Callable[[str], dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    try:
        return load_file(str(path))
    except Exception:  # bfloat16 has no numpy dtype: read through torch instead
        from safetensors.torch import load_file as load_torch

        return {k: v.float().numpy() for k, v in load_torch(str(path)).items()}


def _write(out_path: Path, arch: str, alpha: float, tensors: dict[str, np.ndarray]) -> None:
    from gguf import GGUFWriter

    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}-", dir=out_path.parent)
    os.close(fd)
    try:
        writer = GGUFWriter(tmp, arch)
        writer.add_type("adapter")
        writer.add_string("adapter.type", "lora")
        writer.add_float32("adapter.lora.alpha", alpha)
        for name, array in tensors.items():
            writer.add_tensor(name, array)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
