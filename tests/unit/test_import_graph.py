"""The project's modules import one another without a circle.

Every ``import`` and ``from ... import`` of every module in attribution_core/, dashboard/ and
benchmarks/ counts, wherever it sits (module level, inside a function, under TYPE_CHECKING),
relative forms included: an import deferred into a function still means the two modules need
each other, which is what a circle is.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("attribution_core", "dashboard", "benchmarks")


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the checked packages."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([name] if name else []))


def imported_modules(module: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``module`` imports: ``from a import b`` names ``a.b`` when that is a
    module, else ``a``; ``import a.b`` names ``a.b``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:
                source = _resolve_relative(module, path.name == "__init__.py", node.level,
                                           node.module)
            for alias in node.names:
                child = f"{source}.{alias.name}" if source else alias.name
                targets.add(child if child in known else source)
    return {target for target in targets if target in known and target != module}


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path: list[str] = [start]
        stack = [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            child = next(stack[-1], None)
            if child is None:
                state[path.pop()] = 2
                stack.pop()
                continue
            if state.get(child) == 1:
                return [*path[path.index(child):], child]
            if not state.get(child):
                state[child] = 1
                path.append(child)
                stack.append(iter(sorted(graph[child])))
    return None


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """The groups of modules that reach one another (Tarjan), groups of two or more only."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(group)
    return groups


def every_circle(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle per group of modules that need one another."""
    circles = []
    for group in strongly_connected(graph):
        inside = {name: graph[name] & group for name in group}
        circle = find_circle(inside)
        if circle is not None:
            circles.append(circle)
    return circles


def project_graph() -> dict[str, set[str]]:
    files = module_files()
    known = set(files)
    return {name: imported_modules(name, path, known) for name, path in files.items()}


def test_the_graph_reads_imports_of_every_form() -> None:
    graph = project_graph()
    assert len(graph) > 100, f"only {len(graph)} modules found: the walk missed the packages"
    assert "attribution_core.engine" in graph["attribution_core.methods.ig"], \
        "methods/ig.py's module-level import of the engine is missing"
    assert "attribution_core.models.registry" in graph["attribution_core.models.plugins"], \
        "plugins.py's import of the registry (inside a function or not) is missing"


def test_find_circle_finds_a_planted_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_circle(graph) == ["a", "b", "c", "a"], "a three-module circle was not found"
    assert find_circle({"a": {"b"}, "b": set()}) is None, "a line was taken for a circle"
    two = {**graph, "e": {"f"}, "f": {"e"}}
    assert sorted(map(tuple, every_circle(two))) == [("a", "b", "c", "a"), ("e", "f", "e")], \
        "every_circle must name each separate circle once"


def test_no_import_circle() -> None:
    circles = every_circle(project_graph())
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)
