"""Where the built-in models' weights, metadata and samples live, and how they are checked."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from attribution_core.models.spec import ModelLoadError, ModelStatus

REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS_DIR = REPO_ROOT / "assets" / "models"
SAMPLES_DIR = REPO_ROOT / "assets" / "samples"


def sha256_file(path: Path) -> str:
    """sha256 of a file's bytes, read in chunks."""
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def weights_path(name: str) -> Path:
    return MODELS_DIR / f"{name}.safetensors"


def metadata_path(name: str) -> Path:
    return MODELS_DIR / f"{name}.json"


def read_metadata(name: str) -> dict[str, Any]:
    """The metadata JSON of a built-in model ({} when it has not been trained yet)."""
    path = metadata_path(name)
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def write_metadata(name: str, metadata: dict[str, Any]) -> Path:
    path = metadata_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    return path


def save_weights(name: str, module: nn.Module) -> tuple[Path, str]:
    """Write a module's state dict as ``assets/models/<name>.safetensors``; return path, sha256."""
    path = weights_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu().contiguous() for key, value in module.state_dict().items()}
    save_file(state, str(path))
    path.chmod(0o644)  # safetensors writes 0600; the assets are meant to be shared and committed
    return path, sha256_file(path)


def builtin_status(name: str) -> ModelStatus:
    """Ready when the weights file exists and its hash matches the recorded one."""
    path = weights_path(name)
    script = f"python -m attribution_core.train.{name}"
    if not path.is_file():
        return ModelStatus(False, f"needs weights: {path} is missing (run `{script}`)")
    recorded = read_metadata(name).get("sha256")
    if recorded is None:
        return ModelStatus(False, f"needs metadata: {metadata_path(name)} is missing")
    if sha256_file(path) != recorded:
        return ModelStatus(False, f"weights {path.name} do not match the sha256 in {name}.json")
    return ModelStatus(True, "ready")


def load_builtin_weights(name: str, module: nn.Module) -> str:
    """Fill ``module`` from its safetensors file after checking the hash; return the sha256."""
    status = builtin_status(name)
    if not status.ready:
        raise ModelLoadError(f"Built-in model {name!r} is not ready: {status.message}.")
    path = weights_path(name)
    digest = sha256_file(path)
    state: dict[str, torch.Tensor] = load_file(str(path))
    module.load_state_dict(state, strict=True)
    module.eval()
    return digest
