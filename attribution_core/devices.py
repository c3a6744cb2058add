"""Devices and locks: which device a model runs on, one lock per accelerator, frozen weights.

Several dashboard sessions share one process and its GPU: work on an accelerator is serialised
with a per-device lock keyed by the resolved device, and a model's parameters stop requiring
grad while any session explains it (reference-counted, since sessions may explain a wrapper and
the backbone inside it at once).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from attribution_core.forward import ForwardFn, module_behind

_DEVICE_LOCKS: dict[str, threading.RLock] = {}
_DEVICE_LOCKS_GUARD = threading.Lock()


def pick_device(preference: str | torch.device | None = None) -> torch.device:
    """CUDA when present, else Apple's MPS, else the CPU; an explicit preference wins if usable.

    Parameters
    ----------
    preference : str, torch.device or None, optional
        "cpu", "cuda", "cuda:1", "mps"...; None picks the best available.

    Returns
    -------
    torch.device
        The device; a CUDA preference without CUDA raises RuntimeError.
    """
    if preference is not None:
        device = torch.device(preference)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("CUDA was requested but no CUDA device is available.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe_device(device: torch.device) -> str:
    """A human label of ``device``.

    Parameters
    ----------
    device : torch.device

    Returns
    -------
    str
        "GPU: <name>" for CUDA, "GPU: Apple MPS", or "CPU (<n> threads)".
    """
    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "GPU: Apple MPS"
    return f"CPU ({torch.get_num_threads()} threads)"


def resolve_device(device: torch.device | str) -> torch.device:
    """The concrete device: ``cuda`` becomes ``cuda:<current index>`` (one GPU, one name).

    Parameters
    ----------
    device : torch.device or str
        A device or its name, e.g. "cpu", "cuda", "cuda:1", "mps".

    Returns
    -------
    torch.device
        The device with an index: "cuda" gets the current CUDA index (0 without CUDA), "mps"
        gets 0; any other device comes back as given.
    """
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        index = torch.cuda.current_device() if torch.cuda.is_available() else 0
        return torch.device("cuda", index)
    if device.type == "mps" and device.index is None:
        return torch.device("mps", 0)
    return device


@contextmanager
def device_lock(device: torch.device | str) -> Iterator[None]:
    """Serialise work on an accelerator; the CPU needs no lock (threads share it fairly).

    The lock is keyed on the resolved device, so ``cuda`` (what callers pass) and ``cuda:0``
    (where the parameters live) are the same lock.

    Parameters
    ----------
    device : torch.device or str
        The device the work inside the block runs on.

    Returns
    -------
    context manager
        Holds the device's re-entrant lock for the block (nothing for the CPU); yields None.
    """
    resolved = resolve_device(device)
    if resolved.type == "cpu":
        yield
        return
    with _DEVICE_LOCKS_GUARD:
        lock = _DEVICE_LOCKS.setdefault(str(resolved), threading.RLock())
    with lock:
        yield


_FREEZE_GUARD = threading.Lock()
# Per parameter (id -> count, requires_grad found by the first one in, the parameter itself, held
# so that its id cannot be reused while counted): sessions explaining a wrapper and its backbone
# at once share the backbone's parameters, and the last one out of each restores it.
_FROZEN: dict[int, tuple[int, bool, nn.Parameter]] = {}


@contextmanager
def frozen_parameters(module: nn.Module | None) -> Iterator[None]:
    """Parameters of ``module`` do not require grad inside the block.

    Gradients are wanted with respect to the inputs only: with frozen parameters autograd
    neither saves the activations a weight gradient needs nor computes one. Reference-counted
    per parameter, because several sessions explain shared modules at once (one a wrapper, one
    the backbone inside it) and the last one out must restore what the first one found.

    Parameters
    ----------
    module : nn.Module or None
        The model; None freezes nothing.

    Returns
    -------
    context manager
        Yields None; on leaving, each parameter gets back the ``requires_grad`` it had when
        the first block holding it began.
    """
    if module is None:
        yield
        return
    parameters = list(module.parameters())
    with _FREEZE_GUARD:
        for parameter in parameters:
            count, saved, _ = _FROZEN.get(id(parameter), (0, parameter.requires_grad, parameter))
            if count == 0:
                parameter.requires_grad_(False)
            _FROZEN[id(parameter)] = (count + 1, saved, parameter)
    try:
        yield
    finally:
        with _FREEZE_GUARD:
            for parameter in parameters:
                count, saved, _ = _FROZEN[id(parameter)]
                if count == 1:
                    del _FROZEN[id(parameter)]
                    parameter.requires_grad_(saved)
                else:
                    _FROZEN[id(parameter)] = (count - 1, saved, parameter)


def model_device(forward: ForwardFn, fallback: torch.device) -> torch.device:
    """The device of a module's first parameter, else ``fallback``.

    Parameters
    ----------
    forward : callable
        The model: a module, a bound method of one, or a plain callable.
    fallback : torch.device
        The answer when no module with parameters is behind ``forward``.

    Returns
    -------
    torch.device
        Where the model's parameters live, or ``fallback``.
    """
    module = module_behind(forward)
    if module is not None:
        for tensor in module.parameters():
            return tensor.device
    return fallback
