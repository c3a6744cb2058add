"""Every function of the public API (``attribution_core.__all__``) documents its arguments and
what it returns, numpy-style (Parameters / Returns sections, as Captum's ``attribute``)."""

from __future__ import annotations

import inspect
import re
from itertools import pairwise

import attribution_core


def _sections(doc: str) -> set[str]:
    """The numpy-style section titles of ``doc``: a title line underlined with dashes."""
    lines = [line.strip() for line in doc.splitlines()]
    return {title for title, rule in pairwise(lines)
            if title and re.fullmatch(r"-{3,}", rule)}


def test_section_reader_needs_the_underline() -> None:
    assert _sections("x\n\nParameters\n----------\na : int\n") == {"Parameters"}, \
        "an underlined title is a section"
    assert _sections("Parameters: a, b\nReturns the sum") == set(), \
        "a word in prose is not a section"


def test_public_functions_have_parameters_and_returns() -> None:
    functions = {name: getattr(attribution_core, name) for name in attribution_core.__all__
                 if inspect.isfunction(getattr(attribution_core, name))}
    assert len(functions) >= 10, f"only {sorted(functions)} found in __all__"
    missing = {name: sorted({"Parameters", "Returns"} - _sections(inspect.getdoc(f) or ""))
               for name, f in functions.items()}
    missing = {name: lacks for name, lacks in missing.items() if lacks}
    assert not missing, f"public functions without numpy-style sections: {missing}"


def test_documented_parameters_exist() -> None:
    """A Parameters section names only real arguments (a renamed argument leaves no stale doc)."""
    for name in attribution_core.__all__:
        function = getattr(attribution_core, name)
        if not inspect.isfunction(function):
            continue
        doc = inspect.getdoc(function) or ""
        block = doc.split("Parameters\n----------\n", 1)[-1].split("\n\n", 1)[0]
        documented = {part.strip() for line in block.splitlines()
                      if line and not line.startswith(" ") and " : " in line
                      for part in line.split(" : ")[0].split(",")}
        real = set(inspect.signature(function).parameters)
        assert documented <= real, f"{name} documents {sorted(documented - real)}, not arguments"
