"""One copy of the IG / IG2 run flow in the tree: the pages and Evaluate go through
``attribution_core.explain_flow``; nobody else strings preview -> exact -> ladder ->
convergence (or IG2's preview -> exact -> trust) together again. Read from the source (ast)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FLOW = ROOT / "attribution_core" / "explain_flow"
# The flow's steps: only the flow calls them (their own modules define them).
FLOW_STEPS = {"preview_ig", "preview_ig2", "with_convergence", "summarise_preview",
              "summarise_ig2_preview"}
# The dashboard never calls a method itself: every run is the flow's.
METHODS = {"integrated_gradients", "ig2", "trust_summary"} | FLOW_STEPS


def _calls(path: Path) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else \
                func.attr if isinstance(func, ast.Attribute) else None
            if name is not None:
                found.append((name, node.lineno))
    return found


def _sites(folder: Path, names: set[str]) -> list[str]:
    return [f"{path.relative_to(ROOT)}:{line} {name}()"
            for path in sorted(folder.rglob("*.py")) if FLOW not in path.parents
            for name, line in _calls(path) if name in names]


def test_the_dashboard_runs_ig_and_ig2_only_through_the_flow() -> None:
    sites = _sites(ROOT / "dashboard", METHODS) + _sites(ROOT / "pages", METHODS)
    assert not sites, f"the pages call the methods around the flow: {sites}"


def test_the_library_strings_the_flow_together_only_in_explain_flow() -> None:
    sites = _sites(ROOT / "attribution_core", FLOW_STEPS)
    assert not sites, f"a second copy of the run flow: {sites}"


def test_the_flow_is_where_its_steps_are_called() -> None:
    names = {name for path in FLOW.rglob("*.py") for name, _line in _calls(path)}
    assert names >= FLOW_STEPS, f"the flow calls every step itself: missing {FLOW_STEPS - names}"
