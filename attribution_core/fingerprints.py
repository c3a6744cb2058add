"""What a cached result's key knows of the model and the arguments: content digests of tensors,
arrays and nested values (anything else raises :class:`UncacheableError`), fingerprints of a
module's parameters and buffers, the identity of a callable (qualified name, code, closure) and
the model part of a key (:func:`model_identity`: weights or the caller's ``model_key``, plus the
module's structure from ``identity.module_structure``)."""

from __future__ import annotations

import dataclasses
import hashlib
import types
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from attribution_core.forward import module_behind
from attribution_core.identity import module_structure

_MAX_IDENTITY_DEPTH = 3

class UncacheableError(TypeError):
    """A value that cannot be hashed by content: the computation runs without the cache."""


def tensor_digest(tensor: torch.Tensor, hasher: Any) -> None:
    """Feed dtype, shape and raw bytes of ``tensor`` into ``hasher``.

    Parameters
    ----------
    tensor : tensor
        Any tensor, on any device (its bytes are read from a CPU copy; bfloat16 as int16).
    hasher : hashlib hash object
        Anything with ``update(bytes)``, e.g. ``hashlib.sha256()``; updated in place.

    Returns
    -------
    None
        The digest is in ``hasher``.
    """
    data = tensor.detach().cpu().contiguous()
    hasher.update(f"{data.dtype}|{tuple(data.shape)}|".encode())
    if data.dtype == torch.bfloat16:
        data = data.view(torch.int16)
    hasher.update(data.numpy().tobytes())


def content_digest(value: Any, hasher: Any) -> None:
    """Feed ``value`` into ``hasher`` by content, at any nesting depth.

    Tensors and arrays by dtype, shape and bytes (never ``repr``, which elides the middle of long
    arrays); containers item by item with type tags; scalars and strings exactly. Anything else
    raises :class:`UncacheableError`, so two different objects can never share a key.

    Parameters
    ----------
    value : object
        None, bool, int, float, str, bytes, tensor, numpy array (not of objects) or scalar,
        dtype, device, or a list, tuple, mapping or dataclass instance of these.
    hasher : hashlib hash object
        Anything with ``update(bytes)``, e.g. ``hashlib.sha256()``; updated in place.

    Returns
    -------
    None
        The digest is in ``hasher``.
    """
    if value is None or isinstance(value, bool | int | str | bytes):
        hasher.update(f"{type(value).__name__}:{value!r};".encode())
    elif isinstance(value, float):
        hasher.update(f"float:{value.hex()};".encode())
    elif isinstance(value, torch.Tensor):
        hasher.update(b"tensor:")
        tensor_digest(value, hasher)
    elif isinstance(value, np.ndarray):
        if value.dtype == object:
            raise UncacheableError("an object array cannot be hashed by content")
        data = np.ascontiguousarray(value)
        hasher.update(f"ndarray:{data.dtype.str}|{data.shape}|".encode())
        hasher.update(data.tobytes())
    elif isinstance(value, np.generic):
        content_digest(value.item(), hasher)
    elif isinstance(value, torch.dtype | torch.device | np.dtype):
        hasher.update(f"{type(value).__name__}:{value};".encode())
    elif isinstance(value, list | tuple):
        hasher.update(f"{type(value).__name__}[{len(value)}](".encode())
        for item in value:
            content_digest(item, hasher)
        hasher.update(b")")
    elif isinstance(value, Mapping):
        hasher.update(f"map[{len(value)}](".encode())
        for name in sorted(value, key=repr):
            content_digest(name, hasher)
            content_digest(value[name], hasher)
        hasher.update(b")")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        hasher.update(f"dataclass:{type(value).__qualname__}(".encode())
        for item in dataclasses.fields(value):
            content_digest(item.name, hasher)
            content_digest(getattr(value, item.name), hasher)
        hasher.update(b")")
    else:
        raise UncacheableError(
            f"a {type(value).__qualname__} cannot be hashed by content; the result is computed "
            "without the cache")


def fingerprint_state(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes of a state dict.

    Parameters
    ----------
    tensors : mapping of str to tensor
        A state dict (its order does not matter: names are hashed sorted).

    Returns
    -------
    str
        The sha256 hex digest.
    """
    hasher = hashlib.sha256()
    for name in sorted(tensors):
        hasher.update(name.encode())
        tensor_digest(tensors[name], hasher)
    return hasher.hexdigest()


def module_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and every buffer, persistent or not (a normalisation mean/std that is
    not saved in the state dict still changes the output).

    Parameters
    ----------
    module : nn.Module
        The model.

    Returns
    -------
    dict of str to tensor
        Parameters under ``"p.<name>"`` and buffers under ``"b.<name>"`` (the tensors
        themselves, not copies).
    """
    state = {f"p.{name}": tensor for name, tensor in module.named_parameters()}
    state.update({f"b.{name}": tensor for name, tensor in module.named_buffers()
                  if tensor is not None})
    return state


def fingerprint_module(module: nn.Module) -> str:
    """Type, structure and content hash of a module's parameters and buffers.

    Hashed afresh at every call: an edit through ``param.data`` bumps no version counter, so no
    memo could notice it (sha256 runs at about a GB/s; a ResNet-18 costs tens of ms).

    Parameters
    ----------
    module : nn.Module
        The model.

    Returns
    -------
    str
        ``"<class>:<structure>:<sha256 of parameters and buffers>"``.
    """
    return (f"{type(module).__qualname__}:{module_structure(module)}:"
            f"{fingerprint_state(module_state(module))}")


def callable_identity(function: Any, depth: int = 0) -> str:
    """What makes one callable differ from another: qualified name, code and closure contents.

    ``m.forward`` and ``m.doubled`` differ by name; two lambdas by code, names and constants;
    two closures by what their cells hold (modules by fingerprint, values by content).

    Parameters
    ----------
    function : callable
        A function, bound method, module (identified by its class only) or callable object
        (by its class).
    depth : int, optional
        How many closures deep this call is (default 0); callables in cells are followed
        until depth 3, deeper ones are hashed by content or named opaque.

    Returns
    -------
    str
        The qualified name (with the owner's class for a bound method), followed for Python
        code by a hash of its code and closure cells.
    """
    if isinstance(function, nn.Module):
        return f"module:{type(function).__module__}.{type(function).__qualname__}"
    owner = getattr(function, "__self__", None)
    inner = getattr(function, "__func__", function)
    name = f"{getattr(inner, '__module__', '?')}.{getattr(inner, '__qualname__', '?')}"
    if owner is not None and not isinstance(owner, types.ModuleType):
        name = f"{type(owner).__module__}.{type(owner).__qualname__}|{name}"
    code = getattr(inner, "__code__", None)
    if code is None:
        if not hasattr(function, "__qualname__"):  # a callable object: its class and state
            name = f"object:{type(function).__module__}.{type(function).__qualname__}"
        return name
    hasher = hashlib.sha256()
    _code_digest(code, hasher)
    for cell in getattr(inner, "__closure__", None) or ():
        try:
            contents = cell.cell_contents
        except ValueError:  # an empty cell
            hasher.update(b"empty-cell;")
            continue
        hasher.update(_cell_identity(contents, depth).encode())
    return f"{name}:{hasher.hexdigest()[:24]}"


def _cell_identity(contents: Any, depth: int) -> str:
    if isinstance(contents, nn.Module):
        return fingerprint_module(contents)
    if callable(contents) and depth < _MAX_IDENTITY_DEPTH:
        return callable_identity(contents, depth + 1)
    hasher = hashlib.sha256()
    try:
        content_digest(contents, hasher)
    except UncacheableError:
        return f"opaque:{type(contents).__qualname__}"  # model_key= must cover what it does
    return hasher.hexdigest()


def _code_digest(code: Any, hasher: Any) -> None:
    hasher.update(code.co_code)
    hasher.update(repr((code.co_names, code.co_varnames, code.co_freevars)).encode())
    for constant in code.co_consts:
        if hasattr(constant, "co_code"):
            _code_digest(constant, hasher)
        else:
            hasher.update(repr(constant).encode())


def fingerprint_model(forward: Any) -> str:
    """Identity of ``forward`` plus the content hash of the module behind it.

    Parameters
    ----------
    forward : module or bound method of one
        A plain callable raises ValueError, since nothing says which weights it uses (pass
        ``model_key=`` to the method instead).

    Returns
    -------
    str
        The callable's identity (type, code, closure contents) joined with the module's
        parameters' and buffers' hash; a cache key part.
    """
    module = module_behind(forward)
    if module is None:
        raise ValueError(
            "Caching a plain callable needs model_key= (a hash of the weights it uses)."
        )
    return f"{callable_identity(forward)}|{fingerprint_module(module)}"


def model_identity(forward: Any, model_key: str | None) -> str:
    """The model part of a cache key: ``model_key`` (the caller's name for the weights) joined
    with the callable's own identity and the structure of the module behind it (a named weights
    file says nothing of a layer swapped or switched to training mode), or the module's full
    fingerprint when no key is given.

    Parameters
    ----------
    forward : callable
        The model callable (a module, a bound method of one, or a plain callable).
    model_key : str or None
        The caller's name for the weights; None hashes the weights of the module behind
        ``forward`` (a plain callable then raises ValueError).

    Returns
    -------
    str
        The model part of a cache key.
    """
    if model_key is None:
        return fingerprint_model(forward)
    module = module_behind(forward)
    structure = module_structure(module) if module is not None else "-"
    return f"{callable_identity(forward)}|{model_key}|{structure}"
