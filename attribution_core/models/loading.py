"""Load a model spec once per device and weights version (the in-process model cache).

Below the registry: built-in specs load the models they need for their reference pools through
here, so no module imports the registry that lists them.
"""

from __future__ import annotations

import threading

import torch

from attribution_core.devices import pick_device
from attribution_core.models.spec import LoadedModel, ModelLoadError, ModelSpec

_LOADED: dict[tuple[str, str, str], LoadedModel] = {}
_LOCK = threading.RLock()


def load_spec(spec: ModelSpec, device: str | torch.device | None = None) -> LoadedModel:
    """The loaded model for ``spec`` on ``device`` (default: the best available), cached by
    (name, device, weights hash or file stamp)."""
    target = pick_device(device)
    key = (spec.name, str(target), spec.weights_sha256 or _file_stamp(spec))
    with _LOCK:
        cached = _LOADED.get(key)
        if cached is not None and cached.spec is spec:
            return cached
        status = spec.status()
        if not status.ready:
            raise ModelLoadError(f"Model {spec.name!r} is not ready: {status.message}")
        loaded = spec.loader(target)
        _LOADED[key] = loaded
    return loaded


def _file_stamp(spec: ModelSpec) -> str:
    """Size and mtime of a weights file without a recorded hash (large torchvision checkpoints
    are not re-hashed on every request, yet a replaced file still misses the cache)."""
    path = spec.weights_path
    if path is None or not path.is_file():
        return ""
    stat = path.stat()
    return f"{path}:{stat.st_size}:{stat.st_mtime_ns}"


def forget(name: str | None = None) -> None:
    """Drop the loaded copies of model ``name`` (every model's when None)."""
    with _LOCK:
        for key in [key for key in _LOADED if name is None or key[0] == name]:
            del _LOADED[key]


def loaded_keys() -> list[tuple[str, str]]:
    """(name, device) of every model held now."""
    with _LOCK:
        return [(name, device) for name, device, _stamp in _LOADED]
