"""Loaders for the user's own models: torchvision ImageNet classifiers, uploaded safetensors
state dicts, and Hugging Face classifiers (re-exported from :mod:`.hf`).

Nothing here unpickles untrusted bytes: local torchvision checkpoints are read with
``torch.load(..., weights_only=True)``, uploads must be safetensors (pickle and zip archives are
refused before any parsing), and Hugging Face models load with ``trust_remote_code=False``.
Downloads happen only when allowed (``allow_download=True`` or ``ATTRIBUTION_ALLOW_DOWNLOAD=1``);
otherwise a missing checkpoint is a :class:`ModelLoadError` naming the file and the folder.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torchvision
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from torch import nn
from torchvision.transforms import functional as tvf

from attribution_core import limits
from attribution_core.fingerprints import fingerprint_state
from attribution_core.models.assets import sha256_file
from attribution_core.models.builtin_image import IMAGE_BASELINES
from attribution_core.models.hf import load_hf_image_classifier, load_hf_text_classifier
from attribution_core.models.imaging import unit_tensor_to_display
from attribution_core.models.spec import LoadedModel, ModelLoadError, ModelSpec, ModelStatus
from attribution_core.models.upload_checks import check_shapes, safetensors_header
from attribution_core.models.wrappers import NormalisedImageClassifier, last_linear_name

__all__ = [
    "TORCHVISION_MODELS",
    "ModelLoadError",
    "load_hf_image_classifier",
    "load_hf_text_classifier",
    "load_safetensors_upload",
    "load_torchvision",
    "torchvision_checkpoint",
    "torchvision_specs",
]

# name -> weights enum in torchvision.models (its DEFAULT member is used)
TORCHVISION_MODELS = {
    "resnet50": "ResNet50_Weights",
    "resnet18": "ResNet18_Weights",
    "mobilenet_v3_large": "MobileNet_V3_Large_Weights",
    "vit_b_16": "ViT_B_16_Weights",
    "convnext_tiny": "ConvNeXt_Tiny_Weights",
}
# name -> the final classifier layer (listing specs must not build the networks)
TORCHVISION_HEADS = {
    "resnet50": "fc", "resnet18": "fc", "mobilenet_v3_large": "classifier.3",
    "vit_b_16": "heads.head", "convnext_tiny": "classifier.2",
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def downloads_allowed(allow_download: bool | None) -> bool:
    if allow_download is not None:
        return allow_download
    return os.environ.get("ATTRIBUTION_ALLOW_DOWNLOAD", "") == "1"


def _weights_enum(name: str) -> Any:
    if name not in TORCHVISION_MODELS:
        raise ModelLoadError(f"Unknown torchvision model {name!r}; supported: "
                             f"{', '.join(TORCHVISION_MODELS)}.")
    return getattr(torchvision.models, TORCHVISION_MODELS[name]).DEFAULT


def torchvision_checkpoint(name: str) -> Path:
    """Where torch hub keeps ``name``'s official ImageNet weights."""
    weights = _weights_enum(name)
    return Path(torch.hub.get_dir()) / "checkpoints" / weights.url.rsplit("/", 1)[-1]


def torchvision_status(name: str) -> ModelStatus:
    path = torchvision_checkpoint(name)
    if path.is_file():
        return ModelStatus(True, "ready")
    if downloads_allowed(None):
        return ModelStatus(True, f"ready (weights download to {path} on first use)")
    url = _weights_enum(name).url
    return ModelStatus(False, f"needs weights: put {path.name} in {path.parent} "
                              f"(from {url}), or set ATTRIBUTION_ALLOW_DOWNLOAD=1")


def image_preprocess(image: Image.Image, resize: int, crop: int) -> torch.Tensor:
    """torchvision's ImageNet eval transform without the normalisation: ``[1, 3, crop, crop]``."""
    if not isinstance(image, Image.Image):
        raise ModelLoadError(f"Expected a PIL image, got {type(image).__name__}.")
    resized = tvf.resize(image.convert("RGB"), [resize], antialias=True)
    cropped = tvf.center_crop(resized, [crop])
    return tvf.pil_to_tensor(cropped).float().div(255.0).unsqueeze(0)


def _image_model(spec: ModelSpec, network: nn.Module, mean: Sequence[float],
                 std: Sequence[float], resize: int, crop: int, weights_hash: str,
                 device: torch.device) -> LoadedModel:
    module = NormalisedImageClassifier(network, mean, std).eval().to(device)
    return LoadedModel(
        spec=spec, module=module, forward=module, weights_hash=weights_hash, device=device,
        preprocess=partial(image_preprocess, resize=resize, crop=crop),
        postprocess=unit_tensor_to_display,
        extras={"input_size": (crop, crop), "channels": 3, "mean": tuple(mean),
                "std": tuple(std)},
    )


def load_torchvision(name: str, device: str | torch.device = "cpu",
                     allow_download: bool | None = None, spec: ModelSpec | None = None
                     ) -> LoadedModel:
    """An official torchvision ImageNet classifier, from the local hub cache (or downloaded)."""
    weights = _weights_enum(name)
    path = torchvision_checkpoint(name)
    if path.is_file():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ModelLoadError(f"Could not read {path} as a weights-only checkpoint: "
                                 f"{error}") from error
        digest = sha256_file(path)
    elif downloads_allowed(allow_download):
        try:
            state = weights.get_state_dict(progress=False, check_hash=True)
        except Exception as error:
            raise ModelLoadError(f"Downloading {weights.url} failed ({error}); put "
                                 f"{path.name} in {path.parent} instead.") from error
        digest = sha256_file(path) if path.is_file() else fingerprint_state(state)
    else:
        raise ModelLoadError(f"The weights of {name} are not available offline: put "
                             f"{path.name} (from {weights.url}) in {path.parent}, or allow "
                             "downloads with ATTRIBUTION_ALLOW_DOWNLOAD=1.")
    network = torchvision.models.get_model(name, weights=None)
    load_state(network, state, f"{path.name}")
    transform = weights.transforms()
    spec = spec or _torchvision_spec(name)
    return _image_model(spec, network, transform.mean, transform.std,
                        int(transform.resize_size[0]), int(transform.crop_size[0]), digest,
                        torch.device(device))


def _torchvision_spec(name: str) -> ModelSpec:
    weights = _weights_enum(name)
    head = TORCHVISION_HEADS[name]

    def loader(device: torch.device) -> LoadedModel:
        return load_torchvision(name, device, spec=spec)

    spec = ModelSpec(
        name=name, title=f"torchvision {name} (ImageNet, {weights})", modality="image",
        output_kind="classification", class_names=tuple(weights.meta["categories"]),
        loader=loader, description=f"Official torchvision weights {weights}.",
        weights_path=torchvision_checkpoint(name), default_baseline="black",
        baselines=IMAGE_BASELINES[:-1],  # no data set, so no data-set-mean baseline
        representation_module=f"model.{head}", input_box=(0.0, 1.0),
        ig2_step_size=0.5, metadata={"weights": str(weights), "url": weights.url},
        status=partial(torchvision_status, name), source="torchvision",
    )
    return spec


def torchvision_specs() -> list[ModelSpec]:
    return [_torchvision_spec(name) for name in TORCHVISION_MODELS]


def check_safetensors_bytes(data: bytes) -> None:
    """Refuse pickles and zip archives, and explain malformed or oversized safetensors before
    parsing (every size the header declares is bounded: :func:`.safetensors_header`)."""
    safetensors_header(data)


def load_state(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with a readable account of every mismatch."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{key}: file {tuple(state[key].shape)} vs model {tuple(expected[key].shape)}"
              for key in sorted(set(state) & set(expected))
              if tuple(state[key].shape) != tuple(expected[key].shape)]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_few(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches ({len(shapes)}): {_few(shapes)}")
    if problems:
        raise ModelLoadError(f"The weights in {source} do not match {type(module).__name__}: "
                             + "; ".join(problems) + ".")
    module.load_state_dict(state, strict=True)


def _few(items: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def load_safetensors_upload(data: bytes, architecture: str, num_classes: int,
                            class_names: Sequence[str] | None = None, name: str | None = None,
                            device: str | torch.device = "cpu", image_size: int = 224,
                            mean: Sequence[float] = IMAGENET_MEAN,
                            std: Sequence[float] = IMAGENET_STD) -> LoadedModel:
    """An uploaded safetensors state dict for a torchvision architecture, ready to explain.

    The upload's own normalisation statistics default to ImageNet's; the model input is pixels
    in [0, 1] resized to ``image_size``.
    """
    if not isinstance(data, bytes | bytearray):
        raise ModelLoadError(f"Expected the upload's bytes, got {type(data).__name__}.")
    if num_classes < 1:
        raise ModelLoadError(f"num_classes must be at least 1, got {num_classes}.")
    if class_names is not None and len(class_names) != num_classes:
        raise ModelLoadError(f"{len(class_names)} class names given for {num_classes} classes.")
    if num_classes > limits.MAX_MODEL_CLASSES:
        raise ModelLoadError(f"num_classes is {num_classes:,}; at most "
                             f"{limits.MAX_MODEL_CLASSES:,} are accepted.")
    try:  # laid out without memory, so the header can be compared before anything is built
        with torch.device("meta"):
            skeleton = torchvision.models.get_model(architecture, weights=None,
                                                    num_classes=num_classes)
    except ValueError as error:
        raise ModelLoadError(f"Unknown torchvision architecture {architecture!r}.") from error
    entries = safetensors_header(bytes(data))
    check_shapes(entries, {key: tuple(value.shape) for key, value in
                           skeleton.state_dict().items()}, type(skeleton).__name__, "the upload")
    network = torchvision.models.get_model(architecture, weights=None, num_classes=num_classes)
    try:
        state = load_safetensors_bytes(bytes(data))
    except (SafetensorError, ValueError) as error:
        raise ModelLoadError(f"Not a valid safetensors file: {error}") from error
    load_state(network, state, "the upload")
    head = last_linear_name(network)
    names = tuple(class_names) if class_names else tuple(f"class {i}" for i in range(num_classes))
    model_name = name or f"upload_{architecture}"
    spec = ModelSpec(
        name=model_name, title=f"Uploaded {architecture} ({num_classes} classes)",
        modality="image", output_kind="classification", class_names=names,
        loader=lambda dev: loaded if dev == loaded.device else _moved(loaded, dev),
        default_baseline="black", baselines=IMAGE_BASELINES[:-1],
        representation_module=f"model.{head}" if head else None, input_box=(0.0, 1.0),
        ig2_step_size=0.5, source="upload",
    )
    loaded = _image_model(spec, network, mean, std, image_size, image_size,
                          hashlib.sha256(data).hexdigest(), torch.device(device))
    return loaded


def _moved(loaded: LoadedModel, device: torch.device) -> LoadedModel:
    from dataclasses import replace

    module = loaded.module.to(device)
    return replace(loaded, module=module, forward=module, device=device)
