"""Each page's session-state and widget keys live in one place: its package's ``keys.py``
(the shared widgets' in ``dashboard/widgets/keys.py``). Read from the source (ast): no string
literal is used as ``key=`` or to index ``st.session_state`` anywhere else in dashboard/ or
pages/, and no other module spells a page key (``img_...``, ``txt_...``) at all."""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "dashboard"
PACKAGES = ("image", "text", "tabular", "evaluate", "home", "widgets")
KEYS_MODULES = {DASHBOARD / package / "keys.py" for package in PACKAGES}
PAGE_KEY = re.compile(r"^(img|txt|tab|eval|validity|home|sidebar|selected_model)_")
STATE_METHODS = {"get", "setdefault", "pop"}


def _is_state(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "session_state"


def _is_text(node: ast.AST) -> bool:
    return isinstance(node, ast.JoinedStr) or (
        isinstance(node, ast.Constant) and isinstance(node.value, str))


def _used_as_key(tree: ast.AST) -> list[ast.expr]:
    """String literals passed as ``key=``, indexing session state, or tested with ``in``."""
    found: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            found += [k.value for k in node.keywords if k.arg == "key" and _is_text(k.value)]
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in STATE_METHODS and \
                    _is_state(func.value) and node.args and _is_text(node.args[0]):
                found.append(node.args[0])
        elif isinstance(node, ast.Subscript) and _is_state(node.value) and _is_text(node.slice):
            found.append(node.slice)
        elif isinstance(node, ast.Compare) and _is_text(node.left) and \
                any(_is_state(c) for c in node.comparators):
            found.append(node.left)
    return found


def _page_keys_spelled(tree: ast.AST) -> list[ast.expr]:
    """Any string or f-string starting like a page key (keys built elsewhere, then passed)."""
    inside = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    found: list[ast.expr] = []
    for node in ast.walk(tree):
        first = node.values[0] if isinstance(node, ast.JoinedStr) and node.values else node
        if id(node) in inside or not isinstance(first, ast.Constant):
            continue
        if isinstance(first.value, str) and PAGE_KEY.match(first.value):
            found.append(node)  # type: ignore[arg-type]
    return found


def _offences(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = {id(n): n for n in _used_as_key(tree) + _page_keys_spelled(tree)}
    return [f"{path.relative_to(ROOT)}:{n.lineno} {ast.unparse(n)}" for n in nodes.values()]


def test_no_key_literal_outside_the_keys_modules() -> None:
    sources = sorted(DASHBOARD.rglob("*.py")) + sorted((ROOT / "pages").rglob("*.py"))
    assert len(sources) > 40, f"the dashboard's sources are read: only {len(sources)} found"
    offences = [line for path in sources
                if path not in KEYS_MODULES for line in _offences(path)]
    assert not offences, f"keys spelled outside the keys modules: {offences}"


def test_every_package_has_its_keys_module_and_no_key_is_spelled_twice() -> None:
    seen: dict[str, str] = {}
    for package in PACKAGES:
        module = importlib.import_module(f"dashboard.{package}.keys")
        for name, value in vars(module).items():
            if not name.isupper():
                continue
            spelled = dict(value) if isinstance(value, Mapping) else {"": value}
            for part, key in spelled.items():
                where = f"dashboard.{package}.keys.{name}" + (f"[{part!r}]" if part else "")
                assert isinstance(key, str), f"{where} is not a key string: {key!r}"
                assert key not in seen, f"{key!r} is both {seen[key]} and {where}"
                seen[key] = where
    assert len(seen) > 100, f"the keys modules hold the pages' keys: only {len(seen)} found"
