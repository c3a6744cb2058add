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
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from attribution_core.fingerprints import (
    UncacheableError,
    content_digest,
    model_identity,
    tensor_digest,
)
from attribution_core.identity import execution_context
from attribution_core.results import (
    clone_result,
    result_from_storage,
    result_to_storage,
    to_device,
)
from attribution_core.rule_versions import rule_version

KEY_VERSION = "3"


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
