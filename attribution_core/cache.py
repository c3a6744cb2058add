"""Content-addressed result cache: a memory LRU in front of a size-bounded disk store.

Keys hash the model's weights, every input tensor's bytes (with dtype and shape) and every
parameter, so any change misses and a repeat hits without calling the model. Disk entries are
safetensors files (no pickle: reading a cache entry can never run code); an unreadable or corrupt
entry is deleted and treated as a miss.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from attribution_core.results import result_from_storage, result_to_storage

KEY_VERSION = "1"
_FINGERPRINTS: weakref.WeakKeyDictionary[nn.Module, tuple[int, str]] = weakref.WeakKeyDictionary()


def tensor_digest(tensor: torch.Tensor, hasher: Any) -> None:
    """Feed dtype, shape and raw bytes of ``tensor`` into ``hasher``."""
    data = tensor.detach().cpu().contiguous()
    hasher.update(f"{data.dtype}|{tuple(data.shape)}|".encode())
    if data.dtype == torch.bfloat16:
        data = data.view(torch.int16)
    hasher.update(data.numpy().tobytes())


def fingerprint_state(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes of a state dict."""
    hasher = hashlib.sha256()
    for name in sorted(tensors):
        hasher.update(name.encode())
        tensor_digest(tensors[name], hasher)
    return hasher.hexdigest()


def fingerprint_model(forward: Any) -> str:
    """Weights hash of a module (memoised until any parameter changes in place)."""
    module = forward if isinstance(forward, nn.Module) else getattr(forward, "__self__", None)
    if not isinstance(module, nn.Module):
        raise ValueError(
            "Caching a plain callable needs model_key= (a hash of the weights it uses)."
        )
    state = module.state_dict(keep_vars=True)
    version = hash(tuple((name, t._version, t.data_ptr()) for name, t in state.items()))
    known = _FINGERPRINTS.get(module)
    if known is not None and known[0] == version:
        return known[1]
    digest = f"{type(module).__qualname__}:{fingerprint_state(state)}"
    _FINGERPRINTS[module] = (version, digest)
    return digest


def make_key(kind: str, model_key: str, tensors: Mapping[str, torch.Tensor | None],
             params: Mapping[str, Any]) -> str:
    """The content key of one computation."""
    hasher = hashlib.sha256()
    hasher.update(f"v{KEY_VERSION}|{kind}|{model_key}|".encode())
    for name in sorted(tensors):
        hasher.update(f"|{name}=".encode())
        value = tensors[name]
        if value is None:
            hasher.update(b"None")
        else:
            tensor_digest(value, hasher)
    hasher.update(json.dumps(params, sort_keys=True, default=_json_default).encode())
    return hasher.hexdigest()


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor | np.ndarray):
        return value.tolist()
    return repr(value)


class ResultCache:
    """Memory LRU of ``memory_items`` results, plus an optional disk store of ``disk_bytes``."""

    def __init__(self, memory_items: int = 64, disk_dir: str | Path | None = None,
                 disk_bytes: int = 512 * 1024**2) -> None:
        self.memory_items = memory_items
        self.disk_dir = Path(disk_dir) if disk_dir is not None else None
        self.disk_bytes = disk_bytes
        self._memory: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.RLock()
        self.hits = 0
        self.misses = 0
        if self.disk_dir is not None:
            self.disk_dir.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        assert self.disk_dir is not None
        return self.disk_dir / f"{key}.safetensors"

    def get(self, key: str) -> Any | None:
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                self.hits += 1
                return self._flag(self._memory[key])
            result = self._read_disk(key)
            if result is None:
                self.misses += 1
                return None
            self._remember(key, result)
            self.hits += 1
            return self._flag(result)

    def put(self, key: str, result: Any) -> None:
        with self._lock:
            self._remember(key, result)
            if self.disk_dir is not None:
                self._write_disk(key, result)

    def clear(self) -> None:
        with self._lock:
            self._memory.clear()
            if self.disk_dir is not None:
                for path in self.disk_dir.glob("*.safetensors"):
                    path.unlink(missing_ok=True)

    def __len__(self) -> int:
        return len(self._memory)

    # -- internals ---------------------------------------------------------------------------
    @staticmethod
    def _flag(result: Any) -> Any:
        marker = getattr(result, "with_cache_flag", None)
        return marker(True) if callable(marker) else result

    def _remember(self, key: str, result: Any) -> None:
        self._memory[key] = result
        self._memory.move_to_end(key)
        while len(self._memory) > self.memory_items:
            self._memory.popitem(last=False)

    def _read_disk(self, key: str) -> Any | None:
        if self.disk_dir is None:
            return None
        path = self._path(key)
        if not path.exists():
            return None
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
            tensors = load_file(str(path))
            result = result_from_storage(tensors, metadata)
            os.utime(path)  # recently used entries survive eviction
            return result
        except Exception:  # a corrupt entry is a miss, never a crash
            path.unlink(missing_ok=True)
            return None

    def _write_disk(self, key: str, result: Any) -> None:
        assert self.disk_dir is not None
        try:
            tensors, metadata = result_to_storage(result)
            temporary = self._path(key).with_suffix(".tmp")
            save_file(tensors, str(temporary), metadata=metadata)
            os.replace(temporary, self._path(key))
            self._evict_disk()
        except (OSError, TypeError, ValueError, RuntimeError):
            return  # the disk store is an optimisation; the memory entry still serves

    def _evict_disk(self) -> None:
        assert self.disk_dir is not None
        entries = sorted(self.disk_dir.glob("*.safetensors"), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in entries)
        while entries and total > self.disk_bytes:
            oldest = entries.pop(0)
            total -= oldest.stat().st_size
            oldest.unlink(missing_ok=True)
