"""Training checkpoints: written atomically, verified before a resume trusts them.

A checkpoint is a folder ``step-000120/`` holding the trainable (LoRA) weights, the optimizer,
scheduler and random-generator states and the loop's counters, plus ``checkpoint.json`` with the
run hash and a sha256 per file. It is written in a temporary folder and renamed, so a kill at
any moment leaves either the whole checkpoint or none.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from adaptune.errors import AdaptuneError

MANIFEST = "checkpoint.json"
WEIGHTS = "trainable.safetensors"
STATE = "state.pt"
KEEP = 2
"""Checkpoints kept; older ones are deleted once a newer one is complete."""
_NAME = re.compile(r"^step-(\d{6,})$")


class CheckpointError(AdaptuneError):
    """A checkpoint is corrupt, incomplete or belongs to another run."""


def save(
    root: Path, step: int, model: torch.nn.Module, state: dict[str, Any], run_hash: str
) -> Path:
    """Write checkpoint ``step`` under ``root``; ``state`` holds optimizer, scheduler, counters."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=root))
    try:
        weights = {n: p.detach().cpu().contiguous() for n, p in _trainable(model)}
        save_file(weights, str(tmp / WEIGHTS))
        torch.save({**state, "rng": rng_state()}, tmp / STATE)
        files = {name: _sha256(tmp / name) for name in (WEIGHTS, STATE)}
        manifest = {"run_hash": run_hash, "step": step, "files": files}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for _, old in sorted(_checkpoints(root))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    for partial in root.glob(".step-*"):  # left by a process killed while writing
        shutil.rmtree(partial, ignore_errors=True)
    return final


def latest(root: Path) -> Path | None:
    """The newest complete checkpoint folder under ``root``, if any."""
    found = sorted(_checkpoints(root))
    return found[-1][1] if found else None


def load(path: Path, model: torch.nn.Module, run_hash: str) -> dict[str, Any]:
    """Verify ``path``, copy its weights into ``model`` and return its state (RNG restored)."""
    manifest = _manifest(path)
    if manifest.get("run_hash") != run_hash:
        raise CheckpointError(
            f"Checkpoint {path / MANIFEST} belongs to another run (config, data, base model or "
            "parent adapter differ); train into a new folder or without --resume."
        )
    for name, digest in manifest["files"].items():
        if not (path / name).exists() or _sha256(path / name) != digest:
            raise CheckpointError(
                f"Checkpoint file {path / name} is missing or corrupt; delete {path} to resume "
                "from the one before, or train without --resume."
            )
    try:
        weights = load_file(str(path / WEIGHTS))
        state = torch.load(path / STATE, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"Cannot read checkpoint {path}: {exc}; delete it.") from None
    params = dict(_trainable(model))
    if set(params) != set(weights):
        raise CheckpointError(f"Checkpoint {path / WEIGHTS} holds other weights than this model.")
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(weights[name])
    set_rng_state(state.pop("rng"))
    return state


def _manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        if not isinstance(manifest.get("files"), dict):
            raise ValueError("no file list")
        return manifest
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"Checkpoint manifest {path / MANIFEST} is unreadable ({exc}); delete {path}."
        ) from None


def _checkpoints(root: Path) -> list[tuple[int, Path]]:
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _NAME.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return found


def _trainable(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def rng_state() -> dict[str, Any]:
    """Torch, CUDA, Python and NumPy generator states, as types ``torch.load`` trusts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
