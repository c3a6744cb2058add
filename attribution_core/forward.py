"""What a model callable is to the library: ``ForwardFn`` and the module behind it.

Every method takes ``forward``: an ``nn.Module``, a bound method of one (``model.forward``,
``model.logits``), or any other callable. Where the library needs the weights (to freeze them,
to find the device, to fingerprint them for the cache, to hook a layer) it asks
:func:`module_behind`; this module imports nothing of the library, so anything may use it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

ForwardFn = Callable[..., Any]

__all__ = ["ForwardFn", "module_behind"]


def module_behind(forward: Any) -> nn.Module | None:
    """The ``nn.Module`` behind a forward callable.

    Parameters
    ----------
    forward : callable
        A module, a bound method of one, or any other callable.

    Returns
    -------
    nn.Module or None
        ``forward`` itself when it is a module, the owner of a bound method when that owner is
        a module, else None: a ``functools.partial``, a lambda or a closure does not say which
        weights it uses (the cache then needs ``model_key=``).
    """
    module = forward if isinstance(forward, nn.Module) else getattr(forward, "__self__", None)
    return module if isinstance(module, nn.Module) else None
