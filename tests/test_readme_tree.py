"""The README's source tree names every module and package of ``src/adaptune/``, and no other.

The tree is the fenced block of README.md that starts with the line ``src/adaptune/``. Each entry
is a name (``db.py``, ``store/``) indented two spaces per level below its package, followed by a
few words; a longer description goes on in lines indented to the description column. The tree
ends at the first line that is not indented (``scripts/…``, ``bench/``, ``tests/``).

A few folders of data or of many small same-kind files stand for their contents as one entry
(:data:`WHOLE`); of those, :data:`NAMED` must name each of their modules in their description.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SRC = REPO / "src" / "adaptune"
ROOT = "src/adaptune/"

WHOLE = (
    "dataset/parse/",
    "store/migrations/",
    "train/fast/kernels/",
    "evaluate/templates/",
    "serve/templates/",
    "serve/routes/",
    "samples/",
)
"""Folders listed as one entry: nothing below them needs an entry of its own."""

NAMED = ("dataset/parse/", "serve/routes/")
"""Of :data:`WHOLE`, the folders whose description names each of their modules."""


def tree_lines() -> list[str]:
    """The lines of the README's source tree, its ``src/adaptune/`` line first."""
    lines = README.read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if line == ROOT and i and lines[i - 1] == "```"]
    assert len(starts) == 1, f"README.md needs one fenced block starting with {ROOT!r}"
    tree = [ROOT]
    for line in lines[starts[0] + 1 :]:
        if line == "```" or not line.startswith(" "):
            break
        tree.append(line)
    return tree


def entries() -> dict[str, str]:
    """Each entry's path below ``src/adaptune/`` (folders end in ``/``) → its whole text."""
    lines = tree_lines()[1:]
    assert lines, "the README's source tree is empty"
    head = re.match(r" +\S+ +", lines[0])
    assert head, f"the tree's first entry has no description: {lines[0]!r}"
    column = head.end()
    found: dict[str, str] = {}
    stack: list[str] = []
    path = ""
    for line in lines:
        indent = len(line) - len(line.lstrip())
        if indent >= column:
            assert path, f"a description line with no entry above it: {line!r}"
            found[path] += " " + line.strip()
            continue
        assert indent % 2 == 0 and indent >= 2, f"an entry indented oddly: {line!r}"
        depth = indent // 2 - 1
        assert depth <= len(stack), f"an entry deeper than its package: {line!r}"
        del stack[depth:]
        name = line.split()[0]
        path = "".join(stack) + name
        assert path not in found, f"{path} is listed twice"
        found[path] = line.strip()
        if name.endswith("/"):
            stack.append(name)
    return found


def _source() -> tuple[list[str], list[str]]:
    """The ``*.py`` modules and the folders of ``src/adaptune/``, as tree paths."""
    modules = sorted(p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py"))
    folders = sorted(
        p.relative_to(SRC).as_posix() + "/"
        for p in SRC.rglob("*")
        if p.is_dir() and "__pycache__" not in p.parts
    )
    return modules, folders


def _stood_for(path: str) -> bool:
    """Whether ``path`` lies inside a folder that stands for its contents."""
    return any(path.startswith(folder) and path != folder for folder in WHOLE)


def _report(what: str, items: list[str]) -> str:
    return f"{what} ({len(items)}):\n" + "\n".join(f"  {item}" for item in items)


def test_every_module_and_package_is_listed() -> None:
    listed = entries()
    modules, folders = _source()
    missing = [p for p in folders + modules if not _stood_for(p) and p not in listed]
    for folder in NAMED:
        text = listed.get(folder, "")
        for module in sorted((SRC / folder).glob("*.py")):
            if module.name == "__init__.py":
                continue
            if not re.search(rf"\b{re.escape(module.stem)}\b", text):
                missing.append(f"{module.name} (in the description of {folder})")
    assert not missing, _report("README.md's source tree lacks", missing)


def test_nothing_listed_is_stale() -> None:
    listed = entries()
    stale = [
        path
        for path in listed
        if not ((SRC / path).is_dir() if path.endswith("/") else (SRC / path).is_file())
    ]
    for folder in NAMED:
        for name in re.findall(r"\b\w+\.py\b", listed.get(folder, "")):
            if not (SRC / folder / name).is_file():
                stale.append(f"{name} (named in the description of {folder})")
    assert not stale, _report("README.md's source tree lists what src/adaptune/ lacks", stale)


def test_tree_is_read_as_written() -> None:
    """The parser finds the packages and their modules where the README puts them."""
    listed = entries()
    assert "store/db.py" in listed
    assert "train/fast/rope_attention.py" in listed
    assert listed["train/fast/kernels/"].startswith("kernels/")
    assert "scripts/cut_sample.py" not in listed
    assert all(len(line) <= 100 for line in tree_lines()), "a tree line over 100 characters"
