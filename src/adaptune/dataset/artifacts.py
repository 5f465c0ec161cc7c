"""Dataset builds on disk: content-hashed, immutable folders written atomically.

``ADAPTUNE_HOME/datasets/<domain>/<build>/`` holds one ``<task>.jsonl`` per task, a
``manifest.json`` (what went in, where it came from) and the data card (``datacard.json`` and
``datacard.md``). The build id is a hash of the config and every example, so rebuilding the same
data gives the same id and rewrites nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from adaptune.errors import AdaptuneError
from adaptune.types import Example


class DatasetError(AdaptuneError):
    """A dataset build is missing, unreadable or asked for in a way that cannot work."""


def example_to_json(ex: Example) -> dict[str, Any]:
    """A JSON-able dict of ``ex`` (times as ISO strings)."""
    data = asdict(ex)
    data["known_at"] = ex.known_at.isoformat()
    return data


def example_from_json(data: dict[str, Any]) -> Example:
    """The inverse of :func:`example_to_json`."""
    return Example(**{**data, "known_at": datetime.fromisoformat(data["known_at"])})


def content_hash(config: dict[str, Any], examples: Iterable[Example]) -> str:
    """16 hex digits of sha256 over the config and every example, in a fixed order."""
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for ex in sorted(examples, key=lambda e: e.id):
        h.update(json.dumps(example_to_json(ex), sort_keys=True, ensure_ascii=False).encode())
    return h.hexdigest()[:16]


def datasets_dir(home: Path, domain: str) -> Path:
    """Where a domain's builds live."""
    return home / "datasets" / domain


def write_build(
    home: Path,
    domain: str,
    build_id: str,
    examples: dict[str, list[Example]],
    files: dict[str, str],
) -> Path:
    """Write a build folder atomically (temp folder, then rename); an existing one is kept."""
    final = datasets_dir(home, domain) / build_id
    if final.exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{build_id}-", dir=final.parent))
    try:
        for task, rows in examples.items():
            with (tmp / f"{task}.jsonl").open("w", encoding="utf-8") as fh:
                for ex in rows:
                    fh.write(json.dumps(example_to_json(ex), ensure_ascii=False) + "\n")
        for name, text in files.items():
            (tmp / name).write_text(text, encoding="utf-8")
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def read_manifest(folder: Path) -> dict[str, Any]:
    """A build's manifest, with a clear error when it is missing or corrupt."""
    path = folder / "manifest.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{folder} is not a dataset build (no manifest.json).") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(
            f"{path} is corrupt ({exc}); rebuild with `adaptune dataset build`."
        ) from None


def iter_examples(folder: Path, task: str) -> Iterator[Example]:
    """The examples of one task of a build."""
    path = folder / f"{task}.jsonl"
    if not path.exists():
        raise DatasetError(f"Build {folder.name} has no task '{task}'.")
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            try:
                yield example_from_json(json.loads(line))
            except (json.JSONDecodeError, TypeError, ValueError) as exc:
                raise DatasetError(f"{path}:{lineno} is corrupt ({exc}); rebuild it.") from None


def latest_build(home: Path, domain: str) -> Path:
    """The newest build folder of ``domain``."""
    root = datasets_dir(home, domain)
    builds = [p for p in root.glob("*/manifest.json")] if root.exists() else []
    if not builds:
        raise DatasetError(
            f"No dataset build for domain '{domain}' yet; run `adaptune dataset build`."
        )
    newest = max(builds, key=lambda p: read_manifest(p.parent)["created_at"])
    return newest.parent


def find_build(home: Path, domain: str, build: str | None) -> Path:
    """A build by id (or unique prefix), or the latest one."""
    if build is None:
        return latest_build(home, domain)
    root = datasets_dir(home, domain)
    hits = [p for p in root.glob(f"{build}*") if (p / "manifest.json").exists()]
    if len(hits) != 1:
        raise DatasetError(f"No single build matching '{build}' in domain '{domain}'.")
    return hits[0]
