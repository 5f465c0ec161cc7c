"""Adapter folders on disk: checking a trainer's output, atomic copies, manifests, hashes.

``ADAPTUNE_HOME/adapters/<version>/`` holds the PEFT files (``adapter_model.safetensors``,
``adapter_config.json``) and ``manifest.json``. Every folder and manifest is written next to its
final place under a temporary name and renamed into place, so a reader never sees half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any

from adaptune.errors import RegistryError

WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"
MANIFEST = "manifest.json"
ADAPTER_FILES = (WEIGHTS, CONFIG)
"""The files without which a folder is not a PEFT adapter."""


def adapters_root(home: Path) -> Path:
    """Where every version's folder lives."""
    return home / "adapters"


def _skipped(name: str) -> bool:
    # Trainer checkpoints are for resuming, not serving; our own manifest is rewritten.
    return name == "checkpoints" or name.startswith("checkpoint-") or name == MANIFEST


def read_adapter_config(folder: Path) -> dict[str, Any]:
    """``adapter_config.json`` of ``folder``, with a clear error when missing or corrupt."""
    path = folder / CONFIG
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RegistryError(
            f"{path} is missing; save the adapter with PEFT's save_pretrained()."
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RegistryError(f"{path} is corrupt ({exc}); save the adapter again.") from None
    if not isinstance(data, dict) or "peft_type" not in data:
        raise RegistryError(f"{path} is not a PEFT adapter config (no peft_type).")
    return data


def check_weights(path: Path) -> None:
    """Raise unless ``path`` is a complete safetensors file (its header and data all present)."""
    if not path.is_file():
        raise RegistryError(
            f"{path} is missing; save the adapter with save_pretrained(safe_serialization=True)."
        )
    size = path.stat().st_size
    try:
        with path.open("rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n > size - 8:
                raise ValueError("header longer than the file")
            header = json.loads(fh.read(n))
        tensors = [t for k, t in header.items() if k != "__metadata__"]
        end = max((t["data_offsets"][1] for t in tensors), default=0)
    except (OSError, struct.error, ValueError, KeyError, TypeError, IndexError) as exc:
        raise RegistryError(f"{path} is not a readable safetensors file ({exc}).") from None
    if 8 + n + end > size:
        raise RegistryError(f"{path} is truncated ({size} bytes); save the adapter again.")


def check_adapter(folder: Path) -> dict[str, Any]:
    """Raise unless ``folder`` holds a complete PEFT adapter; return its adapter config."""
    if not folder.is_dir():
        raise RegistryError(f"{folder} is not a folder; pass the trainer's output folder.")
    config = read_adapter_config(folder)
    check_weights(folder / WEIGHTS)
    return config


def check_folder(folder: Path, version: str) -> None:
    """Raise unless ``folder`` holds a complete adapter and the manifest of ``version``."""
    check_adapter(folder)
    manifest = read_manifest(folder)
    if manifest["version"] != version:
        raise RegistryError(
            f"{folder / MANIFEST} describes {manifest['version']}, not {version}; the adapters "
            "folder was edited by hand. Restore it from a backup."
        )


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def stage_copy(source: Path, parent: Path) -> Path:
    """Copy ``source`` (without checkpoints) into a new temporary folder inside ``parent``."""
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".staging-", dir=parent))
    try:
        for item in source.iterdir():
            if _skipped(item.name):
                continue
            if item.is_dir():
                shutil.copytree(item, tmp / item.name)
            else:
                shutil.copy2(item, tmp / item.name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, ensure_ascii=False, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_manifest(folder: Path) -> dict[str, Any]:
    """A version's ``manifest.json``, with a clear error naming the path when it is broken."""
    path = folder / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RegistryError(
            f"{path} is missing; the adapter folder is incomplete. Delete the version with "
            "`adaptune adapters delete VERSION --force` and register it again."
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RegistryError(
            f"{path} is corrupt ({exc}); restore it from a backup or delete the version with "
            "`adaptune adapters delete VERSION --force`."
        ) from None
    if not isinstance(data, dict) or "version" not in data:
        raise RegistryError(f"{path} is not an adapter manifest (no 'version' field).")
    return data


def move_aside(folder: Path) -> Path | None:
    """Rename ``folder`` to a hidden name next to it (``None`` when it is already gone).

    Deleting is then a rename that can be undone until the database has committed.
    """
    if not folder.exists():
        return None
    trash = folder.with_name(f".deleting-{folder.name}-{os.getpid()}")
    os.replace(folder, trash)
    return trash
