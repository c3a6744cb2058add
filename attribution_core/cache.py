"""Content-addressed result cache: a memory LRU in front of a size-bounded disk store.

Keys hash the model's weights and structure (every submodule's type, ``extra_repr`` and training
flag: ``identity.module_structure``), every input tensor's bytes (with dtype and shape), every
parameter, the caller's numerical context (autocast, precision flags:
``identity.execution_context``) and the method's rule version (``rule_versions``), so any change
misses and a repeat hits without calling the model. Results handed out are copies: editing one
in place never rewrites the entry. Disk entries are safetensors files (no pickle: reading a cache
entry can never run code); an unreadable or corrupt entry is deleted and treated as a miss.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import threading
import types
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from attribution_core.forward import module_behind
from attribution_core.identity import execution_context, module_structure
from attribution_core.results import (
    clone_result,
    result_from_storage,
    result_to_storage,
    to_device,
)
from attribution_core.rule_versions import rule_version

KEY_VERSION = "3"
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


def make_key(kind: str, model_key: str, tensors: Mapping[str, torch.Tensor | None],
             params: Mapping[str, Any]) -> str:
    """The content key of one computation under the calling thread's numerical context (see
    ``identity.execution_context``) and ``kind``'s rule version; raises
    :class:`UncacheableError` for a parameter that cannot be hashed by content.

    Parameters
    ----------
    kind : str
        The computation's name (e.g. the method), whose rule version enters the key.
    model_key : str
        The model part, from :func:`model_identity`.
    tensors : mapping of str to tensor or None
        The input tensors by name, hashed by dtype, shape and bytes.
    params : mapping of str to object
        Every other parameter, hashed by content (:func:`content_digest`).

    Returns
    -------
    str
        The sha256 hex digest that keys the result.
    """
    hasher = hashlib.sha256()
    hasher.update(f"v{KEY_VERSION}|{kind}@{rule_version(kind)}|{model_key}|"
                  f"{execution_context()}|".encode())
    for name in sorted(tensors):
        hasher.update(f"|{name}=".encode())
        value = tensors[name]
        if value is None:
            hasher.update(b"None")
        else:
            tensor_digest(value, hasher)
    content_digest(dict(params), hasher)
    return hasher.hexdigest()


def lookup(cache: ResultCache | None, kind: str, forward: Any, model_key: str | None,
           tensors: Mapping[str, torch.Tensor | None], params: Mapping[str, Any],
           device: torch.device) -> tuple[str | None, Any | None]:
    """(key, hit on ``device``) for one computation; (None, None) without a cache or when a
    parameter cannot be hashed by content (then the result is computed and not stored).

    Parameters
    ----------
    cache : ResultCache or None
        The cache to look in; None turns caching off.
    kind : str
        The computation's name, as for :func:`make_key`.
    forward : callable
        The model callable.
    model_key : str or None
        The caller's name for the weights, as for :func:`model_identity`.
    tensors : mapping of str to tensor or None
        The input tensors by name.
    params : mapping of str to object
        Every other parameter, hashed by content.
    device : torch.device
        Where a hit is moved to.

    Returns
    -------
    tuple of (str or None, result or None)
        The key (None when not cacheable, with a warning) and the cached result on
        ``device`` (None on a miss).
    """
    if cache is None:
        return None, None
    try:
        key = make_key(kind, model_identity(forward, model_key), tensors, params)
    except UncacheableError as error:
        warnings.warn(f"Not cached: {error}.", stacklevel=3)
        return None, None
    hit = cache.get(key)
    return key, None if hit is None else to_device(hit, device)


def result_bytes(result: Any) -> int:
    """Bytes held by a result's tensors (fields and tuples of tensors).

    Parameters
    ----------
    result : object
        A result dataclass; anything else counts 0.

    Returns
    -------
    int
        The sum of ``numel * element_size`` over its tensor fields and tensors in tuple fields.
    """
    total = 0
    if not dataclasses.is_dataclass(result):
        return 0
    for item in dataclasses.fields(result):
        value = getattr(result, item.name)
        values = value if isinstance(value, tuple) else (value,)
        total += sum(v.numel() * v.element_size() for v in values if isinstance(v, torch.Tensor))
    return total


class ResultCache:
    """Memory LRU bounded by ``memory_items`` results and ``memory_bytes`` of tensors, plus an
    optional disk store of ``disk_bytes``.

    Entries are kept on the CPU (a shared cache must never hold accelerator memory); callers
    move hits to their own device. The disk store is an optimisation: when its folder is gone,
    full or read-only, the cache carries on in memory and says so in ``disk_error``.
    """

    def __init__(self, memory_items: int = 64, disk_dir: str | Path | None = None,
                 disk_bytes: int = 512 * 1024**2, memory_bytes: int = 512 * 1024**2) -> None:
        self.memory_items = memory_items
        self.memory_bytes = memory_bytes
        self.disk_dir = Path(disk_dir) if disk_dir is not None else None
        self.disk_bytes = disk_bytes
        self.disk_error: str | None = None
        self._memory: OrderedDict[str, Any] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self._held_bytes = 0
        self._lock = threading.RLock()
        self.hits = 0
        self.misses = 0
        if self.disk_dir is not None:
            try:
                self.disk_dir.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                self.disk_error = f"{type(error).__name__}: {error}"

    def _path(self, key: str) -> Path:
        assert self.disk_dir is not None
        return self.disk_dir / f"{key}.safetensors"

    def get(self, key: str) -> Any | None:
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                self.hits += 1
                return self._flag(clone_result(self._memory[key]))
            result = self._read_disk(key)
            if result is None:
                self.misses += 1
                return None
            self._remember(key, result)
            self.hits += 1
            return self._flag(clone_result(result))

    def put(self, key: str, result: Any) -> None:
        # A copy: the caller keeps (and may edit in place) the result it computed.
        result = clone_result(to_device(result, torch.device("cpu")))
        with self._lock:
            self._remember(key, result)
            if self.disk_dir is not None:
                self._write_disk(key, result)

    def clear(self) -> None:
        with self._lock:
            self._memory.clear()
            self._sizes.clear()
            self._held_bytes = 0
            if self.disk_dir is not None and self.disk_dir.is_dir():
                for path in self.disk_dir.glob("*.safetensors"):
                    path.unlink(missing_ok=True)

    def __len__(self) -> int:
        return len(self._memory)

    @property
    def held_bytes(self) -> int:
        """Tensor bytes held in memory now."""
        return self._held_bytes

    # -- internals ---------------------------------------------------------------------------
    @staticmethod
    def _flag(result: Any) -> Any:
        marker = getattr(result, "with_cache_flag", None)
        return marker(True) if callable(marker) else result

    def _remember(self, key: str, result: Any) -> None:
        size = result_bytes(result)
        if size > self.memory_bytes:
            return  # larger than the whole budget: the disk store (if any) still keeps it
        if key in self._memory:
            self._held_bytes -= self._sizes.pop(key, 0)
        self._memory[key] = result
        self._sizes[key] = size
        self._held_bytes += size
        self._memory.move_to_end(key)
        while len(self._memory) > self.memory_items or self._held_bytes > self.memory_bytes:
            evicted, _ = self._memory.popitem(last=False)
            self._held_bytes -= self._sizes.pop(evicted, 0)

    def _read_disk(self, key: str) -> Any | None:
        if self.disk_dir is None:
            return None
        path = self._path(key)
        try:
            if not path.exists():
                return None
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
            tensors = load_file(str(path))
            result = result_from_storage(tensors, metadata)
            os.utime(path)  # recently used entries survive eviction
            return result
        except MemoryError:
            raise
        except Exception:  # a corrupt or vanished entry is a miss, never a crash
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
            return None

    def _write_disk(self, key: str, result: Any) -> None:
        assert self.disk_dir is not None
        temporary = self._path(key).with_suffix(".tmp")
        try:
            self.disk_dir.mkdir(parents=True, exist_ok=True)  # the folder may have been removed
            tensors, metadata = result_to_storage(result)
            save_file(tensors, str(temporary), metadata=metadata)
            os.replace(temporary, self._path(key))
            self._evict_disk()
            self.disk_error = None
        except MemoryError:
            raise
        except Exception as error:  # disk full, read-only, gone: the memory entry still serves
            self.disk_error = f"{type(error).__name__}: {error}"
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)

    def _evict_disk(self) -> None:
        assert self.disk_dir is not None
        entries = []
        for path in self.disk_dir.glob("*.safetensors"):
            with contextlib.suppress(OSError):
                stat = path.stat()
                entries.append((stat.st_mtime, stat.st_size, path))
        entries.sort(key=lambda entry: entry[0])
        total = sum(size for _mtime, size, _path in entries)
        while entries and total > self.disk_bytes:
            _mtime, size, oldest = entries.pop(0)
            total -= size
            oldest.unlink(missing_ok=True)
