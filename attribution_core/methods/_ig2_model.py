"""Where IG2 reads the model's representation: a forward hook on a module, or a callable.

A hook catches the representation on the same forward pass that yields the explained output, so
one pass (and one graph) serves both of IG2's gradients.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from attribution_core.fingerprints import callable_identity
from attribution_core.forward import ForwardFn, module_behind

INPUT_SUFFIX = ":input"


@dataclass(frozen=True)
class RepresentationProbe:
    """``module`` hooked (its output, or its first input when ``take_input``), or ``function``."""

    name: str
    module: nn.Module | None = None
    take_input: bool = False
    function: Callable[..., torch.Tensor] | None = None

    @contextmanager
    def attached(self) -> Iterator[Callable[[], torch.Tensor]]:
        """Hook the module while the block runs; yields ``capture()`` -> the last value seen.

        The module is shared: other sessions' threads run it while this hook is on it, and a
        deep copy of it inherits the hook. So the hook keeps a value only when it fires in the
        thread that attached it and on this very module object.
        """
        if self.module is None:
            yield _no_capture
            return
        seen: list[torch.Tensor] = []
        owner_thread = threading.get_ident()
        hooked = self.module

        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if module is not hooked or threading.get_ident() != owner_thread:
                return
            value = args[0] if self.take_input else output
            seen[:] = [_first_tensor(value, self.name)]

        def capture() -> torch.Tensor:
            if not seen:
                raise RuntimeError(
                    f"The representation module {self.name!r} was not called by the model's "
                    "forward pass (modules used only through their weights, e.g. "
                    "MultiheadAttention.out_proj, fire no hooks); name another module."
                )
            return seen.pop()

        handle = hooked.register_forward_hook(hook)
        try:
            yield capture
        finally:
            handle.remove()


def _no_capture() -> torch.Tensor:
    raise RuntimeError("This representation is a callable; nothing is captured by a hook.")


def _first_tensor(value: Any, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, tuple | list) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    raise TypeError(f"The representation module {name!r} produced {type(value).__name__}, "
                    "not a tensor.")


def resolve_representation(forward: ForwardFn,
                           representation: str | nn.Module | Callable[..., torch.Tensor] | None
                           ) -> RepresentationProbe:
    """Turn IG2's ``representation=`` argument into a probe (see :func:`ig2`)."""
    root = module_behind(forward)
    if representation is None:
        if root is None:
            raise ValueError("forward is not an nn.Module: pass representation= (a module or a "
                             "callable) to say where IG2 reads the representation.")
        linears = [(name, m) for name, m in root.named_modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError("The model has no nn.Linear: pass representation= to name a module.")
        name, module = linears[-1]
        return RepresentationProbe(f"{name}{INPUT_SUFFIX}", module, take_input=True)
    if isinstance(representation, str):
        if root is None:
            raise ValueError("A representation given by name needs forward to be an nn.Module "
                             "(or its bound method); pass the module itself instead.")
        take_input = representation.endswith(INPUT_SUFFIX)
        name = representation.removesuffix(INPUT_SUFFIX)
        modules = dict(root.named_modules())
        if name not in modules:
            known = ", ".join(n for n in modules if n) or "(none)"
            raise ValueError(f"No module named {name!r} in the model; known modules: {known}.")
        return RepresentationProbe(representation, modules[name], take_input=take_input)
    if isinstance(representation, nn.Module):
        name = next((n for n, m in (root.named_modules() if root is not None else ())
                     if m is representation), type(representation).__name__)
        return RepresentationProbe(name, representation)
    if callable(representation):
        return RepresentationProbe(f"callable:{callable_identity(representation)}",
                                   function=representation)
    raise TypeError("representation must be None, a module name, a module or a callable.")
