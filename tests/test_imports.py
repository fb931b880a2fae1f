"""The package's own imports keep its shape: no import cycle, and no module
reaching into another module's private (underscore) names.

Read from the code itself (every ``import`` statement in ``src/scrubproxy``,
wherever it stands, function bodies included), so the rules hold for imports
made late as well as at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import scrubproxy

PACKAGE = Path(scrubproxy.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(modules: dict[str, Path]) -> dict[str, set[tuple[str, str | None]]]:
    """For each module: (imported module, imported name or None) pairs, inside the package."""
    found: dict[str, set[tuple[str, str | None]]] = {}
    for name, path in modules.items():
        edges: set[tuple[str, str | None]] = set()
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("scrubproxy"):
                        edges.add((alias.name, None))
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(name, path.name == "__init__.py", node)
                if not target.startswith("scrubproxy"):
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in modules:  # "from . import cli": the module itself
                        edges.add((sub, None))
                    else:
                        edges.add((target, alias.name))
        found[name] = edges
    return found


def test_no_module_imports_another_modules_private_names() -> None:
    modules = _modules()
    offenders = []
    for module, edges in _imports(modules).items():
        for target, name in edges:
            if name is not None and name.startswith("_") and not name.startswith("__") and target != module:
                offenders.append(f"{module} imports {target}.{name}")
            if any(part.startswith("_") and part not in ("__init__", "__main__", "_version") for part in target.split(".")):
                offenders.append(f"{module} imports private module {target}")
    assert offenders == []


def test_package_has_no_import_cycle() -> None:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, edges in _imports(modules).items():
        graph[module] = {target for target, _ in edges if target in modules and target not in (module, "scrubproxy")}
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            # A package importing its own modules is how it re-exports them.
            if nxt.startswith(node + "."):
                continue
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert cycles == []
