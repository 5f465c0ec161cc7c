"""Exporting a version: its PEFT files for PEFT or vLLM, or a full model with the LoRA merged.

vLLM serves PEFT-format LoRA adapters as they are (``--enable-lora``, runtime loading); the
``vllm`` format only records the hub id of the base model in ``adapter_config.json``. A merged
export needs the base model's weights, which a loader callback provides, so that the trainer's
loader (offline, any causal LM) can be plugged in.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from adaptune.errors import RegistryError
from adaptune.registry.files import (
    CONFIG,
    MANIFEST,
    WEIGHTS,
    read_adapter_config,
    sha256_file,
    write_json_atomic,
)
from adaptune.registry.records import AdapterVersion
from adaptune.registry.versions import get
from adaptune.store import Store

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

ExportFormat = Literal["peft", "vllm", "gguf"]
BaseLoader = Callable[[str], tuple["PreTrainedModel", "PreTrainedTokenizerBase | None"]]
"""``load_base(base_model) -> (model, tokenizer)``; the tokenizer may be ``None``."""

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def export(
    store: Store,
    version: str,
    to: Path | str,
    *,
    merged: bool = False,
    format: ExportFormat = "peft",
    load_base: BaseLoader | None = None,
    base_gguf: Path | None = None,
) -> Path:
    """Write ``version`` to the new (or empty) folder ``to`` and return it.

    ``format`` ``peft`` copies the adapter files and the manifest; ``vllm`` also writes a hub
    base-model id into ``adapter_config.json``. ``merged`` instead saves the base model (from
    ``load_base``, default :func:`default_loader`) with the LoRA merged in; the format does not
    matter then, since PEFT, transformers and vLLM all load a full model. ``gguf`` writes
    ``adapter.gguf``, a llama.cpp LoRA for ``base_gguf`` (default: the bundled model's GGUF).
    """
    if format not in ("peft", "vllm", "gguf"):
        raise RegistryError(f"Unknown export format '{format}'; use peft, vllm or gguf.")
    rec = get(store, version)
    if sha256_file(rec.path / WEIGHTS) != rec.weights_sha256:
        raise RegistryError(
            f"{rec.path / WEIGHTS} changed since {version} was registered (sha256 differs); "
            "restore it from a backup or register the adapter again."
        )
    target, created = _prepare_target(to)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=".adaptune-export-", dir=target.parent))
    except OSError as exc:
        _remove_folders(created)
        raise _unwritable(target, exc) from None
    try:
        if merged:
            _write_merged(rec, tmp, load_base or default_loader)
        elif format == "gguf":
            _write_gguf(rec, tmp, base_gguf)
        else:
            _write_adapter(rec, tmp, format)
        if target.exists():
            target.rmdir()  # empty, checked above
        os.replace(tmp, target)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_folders(created)
        if isinstance(exc, OSError):
            raise _unwritable(target, exc) from None
        raise
    log.info("exported %s to %s", version, target)
    return target


def _prepare_target(to: Path | str) -> tuple[Path, list[Path]]:
    """Check that ``to`` can become the export folder and create its missing parents.

    Returns the absolute target and the folders created for it (outermost first), which a
    failed export removes again so that it leaves nothing behind.
    """
    raw = os.fspath(to)
    if not raw.strip():
        raise RegistryError("The export folder is empty (--to ''); name a new folder to write.")
    if "\0" in raw:
        raise RegistryError(f"The export folder {raw!r} contains a NUL byte; name another one.")
    target = Path(raw)
    try:
        target = target.resolve()
        if target.exists() and not target.is_dir():
            raise RegistryError(f"{target} is a file; choose a new folder to export to.")
        if target.is_dir() and any(target.iterdir()):
            raise RegistryError(
                f"{target} exists and is not empty; choose a new folder to export to."
            )
        return target, _make_folders(target.parent)
    except OSError as exc:
        raise _unwritable(target, exc) from None


def _make_folders(folder: Path) -> list[Path]:
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    if not folder.is_dir():
        raise RegistryError(f"{folder} is a file, not a folder; choose another place to export to.")
    created: list[Path] = []
    try:
        for item in reversed(missing):
            item.mkdir()
            created.append(item)
    except OSError:
        _remove_folders(created)
        raise
    return created


def _remove_folders(created: list[Path]) -> None:
    """Remove the folders an export created, innermost first, as long as they are empty."""
    for item in reversed(created):
        try:
            item.rmdir()
        except OSError:
            return


def _unwritable(target: Path, exc: OSError) -> RegistryError:
    reason = exc.strerror or str(exc)
    if exc.filename and str(exc.filename) != str(target):
        reason = f"{reason}: {exc.filename}"
    return RegistryError(f"Cannot export to {target} ({reason}); choose a folder you can write to.")


def _export_manifest(rec: AdapterVersion, how: str) -> dict[str, Any]:
    return {**rec.manifest(), "export": {"format": how, "at": datetime.now(UTC).isoformat()}}


def _write_adapter(rec: AdapterVersion, tmp: Path, format: ExportFormat) -> None:
    for item in rec.path.iterdir():
        if item.is_dir():
            shutil.copytree(item, tmp / item.name)
        elif item.name != MANIFEST:
            shutil.copy2(item, tmp / item.name)
    if format == "vllm":
        config = read_adapter_config(tmp)
        if _HUB_ID.match(rec.base_model) and not Path(rec.base_model).exists():
            config["base_model_name_or_path"] = rec.base_model
        for key in ("use_dora", "modules_to_save"):
            if config.get(key):
                log.warning("%s sets %s, which vLLM may refuse to serve", rec.version, key)
        write_json_atomic(tmp / CONFIG, config)
    write_json_atomic(tmp / MANIFEST, _export_manifest(rec, format))


def _write_gguf(rec: AdapterVersion, tmp: Path, base_gguf: Path | None) -> None:
    from adaptune.generate.gguf_lora import convert

    if base_gguf is None:
        from adaptune.train.model import DEFAULT_ID, GGUF_FILE, gguf_folder

        if rec.base_model != DEFAULT_ID:
            raise RegistryError(
                f"{rec.version} was trained on {rec.base_model}; pass the GGUF file of that "
                "model (--base-gguf) to export it for llama.cpp."
            )
        base_gguf = gguf_folder() / GGUF_FILE
    convert(rec.path, base_gguf, tmp / "adapter.gguf")
    write_json_atomic(tmp / MANIFEST, _export_manifest(rec, "gguf"))


def _write_merged(rec: AdapterVersion, tmp: Path, load_base: BaseLoader) -> None:
    try:
        from peft import PeftModel
    except ImportError:
        raise RegistryError("A merged export needs PEFT; install adaptune[ml].") from None
    from adaptune.train.lora import quiet_peft

    model, tokenizer = load_base(rec.base_model)
    with quiet_peft():
        merged = PeftModel.from_pretrained(model, str(rec.path)).merge_and_unload()
    merged.save_pretrained(str(tmp))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(tmp))
    write_json_atomic(tmp / MANIFEST, _export_manifest(rec, "merged"))


def default_loader(base_model: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase | None]:
    """Load ``base_model`` (a local path or a cached hub id) with transformers."""
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise RegistryError("A merged export needs transformers; install adaptune[ml].") from None
    try:
        model = AutoModelForCausalLM.from_pretrained(base_model, dtype="auto", use_kernels=False)
    except OSError as exc:
        raise RegistryError(
            f"Cannot load the base model {base_model} ({exc}); download it first or export "
            "without --merged."
        ) from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(base_model)
    except (OSError, ValueError):
        log.warning("%s has no tokenizer; the merged export will have none", base_model)
        tokenizer = None
    return model, tokenizer
