"""The floor plan, checked: imports flow one way and never loop.

``compare`` is five layers, each a subpackage; a module may import its own
layer and the layers below it, never one above::

    commands -> suite -> evaluation -> pipeline -> io

``baselines``, ``unet``, ``stain`` and ``tiling`` stand on their libraries
alone and never import ``compare``; the napari plugin ``wbc_napari`` uses
only ``compare``'s public API.  Imports inside functions count too: a
lazy import is still a dependency.  See ``docs/architecture.md``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("compare", "baselines", "unet", "stain", "tiling", "wbc_napari")
LAYERS = ("io", "pipeline", "evaluation", "suite", "commands")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module an imported name lives in (``a.b.func`` -> ``a.b``), or None."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> set[str]:
    """Project modules that ``module`` imports, at the top or inside functions."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            target = _resolve(name)
            # a package's __init__ naming its own submodules is not a dependency on them
            if target and target != module and not target.startswith(module + "."):
                found.add(target)
    return found


GRAPH = {module: _imports(module) for module in MODULES}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "compare" or len(parts) < 2 or parts[1] not in LAYERS:
        return None
    return LAYERS.index(parts[1])


def test_every_compare_module_sits_in_a_layer():
    loose = [m for m in MODULES if m.startswith("compare.") and _layer(m) is None
             and m not in ("compare.__main__",)]
    assert loose == [], f"modules of compare/ outside its five layers {LAYERS}: {loose}"


@pytest.mark.parametrize("layer", LAYERS)
def test_a_layer_imports_only_itself_and_the_layers_below(layer):
    level = LAYERS.index(layer)
    upward = sorted(f"{m} -> {t}" for m in GRAPH if _layer(m) == level
                    for t in GRAPH[m] if (_layer(t) or 0) > level or t == "compare")
    assert upward == [], f"compare.{layer} imports a layer above it: {upward}"


@pytest.mark.parametrize("package", ["baselines", "unet", "stain", "tiling"])
def test_the_segmenters_and_helpers_never_import_compare(package):
    bad = sorted(f"{m} -> {t}" for m in GRAPH if m.split(".")[0] == package
                 for t in GRAPH[m] if t.split(".")[0] == "compare")
    assert bad == []


def test_the_napari_plugin_uses_only_the_public_api():
    inner = sorted(f"{m} -> {t}" for m in GRAPH if m.split(".")[0] == "wbc_napari"
                   for t in GRAPH[m] if t.startswith("compare."))
    assert inner == [], "wbc_napari reaches past compare's public API (compare/__init__.py)"


def _loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    loops: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                loops.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return loops


def test_no_import_loops():
    assert _loops(GRAPH) == []


def test_the_loop_finder_finds_a_loop():
    assert _loops({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_public_api_resolves():
    import compare

    for name in compare.__all__:
        assert getattr(compare, name) is not None, name
