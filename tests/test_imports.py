"""The package's import graph: no module imports one that imports it back (lazy imports included),
and reading a light module does not pull in a heavy one."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import metapose_geom

ROOT = Path(metapose_geom.__file__).parent
PACKAGE = "metapose_geom"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def _is_submodule(name: str, modules: dict[str, Path]) -> bool:
    if name in modules:
        return True
    try:
        return importlib.util.find_spec(name) is not None  # a compiled extension such as _core
    except ImportError:
        return False


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere in its body (top level or inside functions)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                source = node.module if node.level == 0 else _resolve(name, is_package, node.level, node.module)
                if source is None:
                    continue
                # "from . import x" names a submodule (Python or compiled) when there is one, else an
                # attribute of the package
                targets = [f"{source}.{alias.name}" if _is_submodule(f"{source}.{alias.name}", modules) else source
                           for alias in node.names]
            for target in targets:
                if target not in modules and target.startswith(PACKAGE + ".") and _is_submodule(target, modules):
                    continue  # a compiled extension: imports nothing of ours
                while target and target not in modules:  # a.b.c where c is an attribute: a.b
                    target = target.rpartition(".")[0]
                if target.startswith(PACKAGE) and target != name:
                    graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_graph_sees_the_known_edges():
    graph = import_graph()
    assert "metapose_geom.views" in graph[PACKAGE]
    assert "metapose_geom._checks" in graph["metapose_geom.views"]


def test_no_module_imports_one_that_imports_it_back():
    assert _cycles(import_graph()) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
