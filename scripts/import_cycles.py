"""Import cycles among the project's packages (appliance, pipeline, ui), from the source alone.

`python scripts/import_cycles.py` prints them; tests/test_import_cycles.py keeps the answer at none. Two views:
the imports that run when a module is imported (module level), and every import, also those inside functions (a
lazy import that closes a loop still ties the modules together). Imports under `if TYPE_CHECKING:` never run and
are left out; `from pkg import sub` counts as an import of the submodule, not of the package's __init__.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("appliance", "pipeline", "ui")


def _modules() -> dict[str, Path]:
    mods = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(node: ast.AST, module_level: bool):
    for child in ast.iter_child_nodes(node):
        if _is_type_checking(child):
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        elif not module_level or isinstance(child, (ast.If, ast.Try, ast.With)):
            yield from _imports(child, module_level)


def _deps(name: str, path: Path, mods: dict[str, Path], module_level: bool) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    wanted: set[str] = set()
    for node in _imports(ast.parse(path.read_text()), module_level):
        if isinstance(node, ast.Import):
            wanted.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            base = ".".join(parts + ([base] if base else []))
        subs = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in mods]
        wanted.update(subs)
        if len(subs) < len(node.names):  # names defined in `base` itself
            wanted.add(base)
    found = set()
    for dep in wanted:
        while dep and dep not in mods:
            dep = dep.rpartition(".")[0]
        if dep and dep != name:
            found.add(dep)
    return found


def cycles(module_level: bool) -> list[list[str]]:
    """The groups of modules that import each other (strongly connected components of more than one module)."""
    mods = _modules()
    graph = {name: _deps(name, path, mods, module_level) for name, path in mods.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan
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
                found.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


if __name__ == "__main__":
    for module_level in (True, False):
        what = "module-level imports" if module_level else "all imports (also inside functions)"
        print(f"{what}: {cycles(module_level) or 'no cycles'}")
