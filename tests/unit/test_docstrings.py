"""Every function of the public API (``attribution_core.__all__``) documents its arguments and
what it returns, numpy-style (Parameters / Returns sections, as Captum's ``attribute``)."""

from __future__ import annotations

import importlib
import inspect
import re
from itertools import pairwise

import attribution_core


def _sections(doc: str) -> set[str]:
    """The numpy-style section titles of ``doc``: a title line underlined with dashes."""
    lines = [line.strip() for line in doc.splitlines()]
    return {title for title, rule in pairwise(lines)
            if title and re.fullmatch(r"-{3,}", rule)}

_DOCUMENTED_MODULES = ("metrics.units", "metrics.curves", "metrics.sensitivity", "references",
                       "quadrature", "cache", "fingerprints", "engine", "devices",
                       "model_outputs", "preview", "tuning")


def _documented_parameters(doc: str) -> set[str]:
    """The argument names a numpy-style Parameters section lists (``a, b : int`` names two)."""
    if "Parameters\n----------\n" not in doc:
        return set()
    block = doc.split("Parameters\n----------\n", 1)[1].split("\n\n", 1)[0]
    return {part.strip() for line in block.splitlines()
            if line and not line.startswith(" ") and " : " in line
            for part in line.split(" : ")[0].split(",")}


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
        documented = _documented_parameters(inspect.getdoc(function) or "")
        real = set(inspect.signature(function).parameters)
        assert documented <= real, f"{name} documents {sorted(documented - real)}, not arguments"



def test_module_functions_have_parameters_and_returns() -> None:
    """Every public function defined in the core's modules (not re-exported ones) documents
    each of its arguments, only real ones, and what it returns; no argument: Returns only."""
    problems: dict[str, str] = {}
    count = 0
    for module_name in _DOCUMENTED_MODULES:
        module = importlib.import_module(f"attribution_core.{module_name}")
        for name, function in vars(module).items():
            if name.startswith("_") or not inspect.isfunction(function) \
                    or function.__module__ != module.__name__:
                continue
            count += 1
            doc = inspect.getdoc(function) or ""
            real = set(inspect.signature(function).parameters)
            needed = {"Parameters", "Returns"} if real else {"Returns"}
            lacks = sorted(needed - _sections(doc))
            documented = _documented_parameters(doc)
            if lacks or documented != real:
                problems[f"{module_name}.{name}"] = (
                    f"lacks {lacks}, undocumented {sorted(real - documented)}, "
                    f"not arguments {sorted(documented - real)}")
    assert count >= 35, f"only {count} public functions found in {_DOCUMENTED_MODULES}"
    assert not problems, f"functions whose docstring is not numpy-style: {problems}"
