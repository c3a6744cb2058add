"""The software and machine behind a set of numbers: versions, device, platform.

Shared by the JSON record and the HTML report (below both, so neither imports the other).
"""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

_PACKAGES = ("torch", "torchvision", "captum", "numpy", "streamlit", "plotly", "transformers",
             "safetensors")


def environment(device: str | None = None) -> dict[str, Any]:
    """Versions of everything that shapes the numbers, plus the device and platform."""
    versions: dict[str, str | None] = {}
    for package in _PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None  # not installed: recorded as absent, not guessed
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return {"python": platform.python_version(), **versions, "device": device,
            "platform": platform.platform()}
