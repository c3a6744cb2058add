"""No function in attribution_core/ is longer than 60 lines (from its ``def`` to its last line,
less its docstring): a function a newcomer reads top to bottom without scrolling back.

The docstring does not count: the public functions carry numpy-style Parameters / Returns
sections (tests/unit/test_docstrings.py) that are longer than many bodies, and documentation is
not what makes a function hard to follow."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 60


def _docstring_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    first = node.body[0] if node.body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
            and isinstance(first.value.value, str):
        return (first.end_lineno or first.lineno) - first.lineno + 1
    return 0


def long_functions(package: Path, limit: int = MAX_LINES) -> list[str]:
    """``path:name lines`` of every function or method over ``limit`` lines."""
    found = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                # Decorators do not count: the function starts at its ``def`` line.
                lines = (node.end_lineno or node.lineno) - node.lineno + 1 - _docstring_lines(node)
                if lines > limit:
                    found.append(f"{path.relative_to(package.parent)}:{node.name} {lines}")
    return found


def test_the_counter_counts_def_to_end(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(61))
    doc = '    """Docs\n\n    more docs\n    """\n'
    (tmp_path / "m.py").write_text(f"def long():\n{doc}{body}\n\ndef short():\n{doc}"
                                   "    return 1\n")
    assert long_functions(tmp_path, 62) == [], "a 62-line function is within a limit of 62"
    offenders = long_functions(tmp_path)
    assert len(offenders) == 1 and offenders[0].endswith("long 62"), \
        f"a 62-line function must be listed with its length, got {offenders}"


def test_no_function_over_sixty_lines() -> None:
    offenders = long_functions(ROOT / "attribution_core")
    assert not offenders, f"functions over {MAX_LINES} lines:\n" + "\n".join(offenders)
