"""The package layers: imports point down, and no import hides in a function to dodge a loop.

adaptune's packages, lowest first; a module imports from its own package or from a lower layer,
at module level or inside a function alike::

    adaptune (__init__), types, errors
    config
    store, track
    ingest, dataset, notify
    feedback, memory, pages
    triage
    train
    generate
    registry
    evaluate
    jobs
    serve
    pipeline
    cli
    __main__

A higher layer hands a lower one what it needs: ``pipeline.build_dataset`` gives the dataset
build the feedback examples and trains the build's triage classifier; ``adaptune worker``
registers the ``train`` job's handler with ``jobs``. Within a package, the module-level imports
form no loop (a submodule never imports its own package's ``__init__`` while that imports the
submodule), and an import placed inside a function (or under ``TYPE_CHECKING``) would form none
at module level either: such imports are only there to keep heavy optional dependencies (torch,
transformers, fastapi, …) out of light paths such as the CLI's ``--help`` and the service's
start-up.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "adaptune"
LAYERS = (
    ("__init__", "types", "errors"),
    ("config",),
    ("store", "track"),
    ("ingest", "dataset", "notify"),
    ("feedback", "memory", "pages"),
    ("triage",),
    ("train",),
    ("generate",),
    ("registry",),
    ("evaluate",),
    ("jobs",),
    ("serve",),
    ("pipeline",),
    ("cli",),
    ("__main__",),
)
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str, tree: ast.AST, deferred: bool = False):
    """``(target module, line, deferred)`` of every adaptune import of ``module``; deferred:
    inside a function or under ``TYPE_CHECKING``. ``from adaptune.P import x`` imports the
    package ``adaptune.P`` (its ``__init__``), unless that is ``module`` itself importing its
    submodule ``x``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == module:
                for alias in node.names:
                    yield f"{module}.{alias.name}", node.lineno, deferred
            elif node.module.split(".")[0] == "adaptune":
                yield node.module, node.lineno, deferred
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "adaptune":
                    yield alias.name, node.lineno, deferred
        inner = deferred or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        inner = inner or (isinstance(node, ast.If) and _is_type_checking(node))
        yield from _imports(module, node, inner)


def _graph() -> dict[str, list[tuple[str, int, bool]]]:
    return {
        _module(path): list(_imports(_module(path), ast.parse(path.read_text(encoding="utf-8"))))
        for path in sorted(ROOT.rglob("*.py"))
        if "migrations" not in path.parts
    }


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import loop of ``edges`` (module → modules it imports), or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_every_package_has_a_layer() -> None:
    assert {_package(m) for m in _graph()} <= set(LAYER)


def test_imports_only_point_down() -> None:
    climbs = [
        f"{module}:{line} imports {target}"
        for module, imports in _graph().items()
        for target, line, _deferred in imports
        if _package(target) != _package(module)
        and LAYER[_package(target)] >= LAYER[_package(module)]
    ]
    assert climbs == []


def test_no_import_loop_at_module_level() -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    for module, imports in _graph().items():
        edges[module] |= {target for target, _line, deferred in imports if not deferred}
    assert _cycle(edges) is None


def test_no_import_hides_in_a_function_to_dodge_a_loop() -> None:
    graph = _graph()
    edges: dict[str, set[str]] = defaultdict(set)
    for module, imports in graph.items():
        edges[module] |= {target for target, _line, deferred in imports if not deferred}
    dodging = []
    for module, imports in graph.items():
        for target, line, deferred in imports:
            if deferred and target not in edges[module]:
                edges[module].add(target)
                if _cycle(edges):
                    dodging.append(f"{module}:{line} imports {target}")
                edges[module].discard(target)
    assert dodging == []
