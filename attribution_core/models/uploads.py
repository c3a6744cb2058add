"""Models a user uploads: a torchvision architecture with a safetensors state dict, and the
optional class-names file that goes with it.

Nothing here unpickles: weights must be safetensors (pickles and torch.save zip archives are
refused before any parsing, and every tensor the header declares is checked against the
architecture before anything is allocated: :mod:`.upload_checks`). The head size is read
from the state dict, so a 5-class fine-tuned ResNet loads without being told it has 5 classes.
Every upload is content-hashed (sha256): that hash is the model's ``weights_sha256`` and so the
result cache's key. The spec is built but never registered: the dashboard keeps it in the
uploading session only (dashboard/widgets/session_models.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from functools import partial

import torch
import torchvision
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from torch import nn

from attribution_core import limits
from attribution_core.identity import upload_digest
from attribution_core.models.loaders import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    image_preprocess,
)
from attribution_core.models.plugin_specs import build_spec
from attribution_core.models.spec import ModelLoadError, ModelSpec
from attribution_core.models.upload_checks import (
    TensorEntry,
    check_class_names,
    check_shapes,
    safetensors_header,
)

MODEL_UPLOAD_VARIABLE = "IG_DASHBOARD_MAX_MODEL_UPLOAD_MB"
DEFAULT_MODEL_UPLOAD_MB = 400  # resnet50 is ~100 MB, vit_b_16 ~330 MB in float32 (fp16: half)
MAX_CLASS_NAMES = limits.MAX_MODEL_CLASSES
MAX_CLASS_NAME_CHARS = limits.MAX_MODEL_NAME_CHARS
MAX_CLASS_FILE_BYTES = limits.SMALL_UPLOADS_MB * 2**20
# architecture -> the state-dict key of its classifier weight ([classes, features])
UPLOAD_ARCHITECTURES = {
    "resnet18": "fc.weight", "resnet50": "fc.weight",
    "mobilenet_v3_small": "classifier.3.weight", "mobilenet_v3_large": "classifier.3.weight",
    "efficientnet_b0": "classifier.1.weight", "densenet121": "classifier.weight",
    "convnext_tiny": "classifier.2.weight", "vit_b_16": "heads.head.weight",
}
RESIZE, CROP = 256, 224  # torchvision's ImageNet evaluation transform


def model_upload_limit_bytes() -> int:
    """The operator's limit on one model upload (``IG_DASHBOARD_MAX_MODEL_UPLOAD_MB``)."""
    text = os.environ.get(MODEL_UPLOAD_VARIABLE, "").strip()
    try:
        megabytes = float(text) if text else DEFAULT_MODEL_UPLOAD_MB
    except ValueError:
        megabytes = DEFAULT_MODEL_UPLOAD_MB
    return int(max(1.0, megabytes) * 2**20)


def check_model_upload_size(n_bytes: int, what: str = "The model file") -> None:
    limit = model_upload_limit_bytes()
    if n_bytes > limit:
        raise ModelLoadError(f"{what} is {n_bytes / 2**20:.0f} MB; this server accepts model "
                             f"uploads up to {limit / 2**20:.0f} MB.")


def parse_class_names(data: bytes, file_name: str) -> tuple[str, ...]:
    """Class names from a .json list of strings or a .txt with one name per line."""
    if len(data) > MAX_CLASS_FILE_BYTES:
        raise ModelLoadError(f"{file_name} is {len(data) / 2**20:.1f} MB; a class-names file "
                             f"may be at most {MAX_CLASS_FILE_BYTES // 2**20} MB.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ModelLoadError(f"{file_name} is not UTF-8 text ({error.reason} at byte "
                             f"{error.start}).") from error
    if file_name.lower().endswith(".json"):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as error:
            raise ModelLoadError(f"{file_name} is not valid JSON ({error.msg}, line "
                                 f"{error.lineno}).") from error
        if isinstance(parsed, dict):  # {"0": "cat", "1": "dog"} as in id2label
            try:
                parsed = [parsed[key] for key in sorted(parsed, key=int)]
            except (TypeError, ValueError) as error:
                raise ModelLoadError(f"{file_name}: a JSON object of class names needs the "
                                     "keys 0, 1, 2, ...") from error
        if not isinstance(parsed, list) or not all(isinstance(n, str | int) for n in parsed):
            raise ModelLoadError(f"{file_name} must hold a JSON list of class names.")
        names = [str(n).strip() for n in parsed]
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise ModelLoadError(f"{file_name} holds no class names.")
    return check_class_names(names, file_name)


def torchvision_upload_spec(data: bytes, architecture: str,
                            class_names: Sequence[str] | None = None,
                            file_name: str = "the upload") -> ModelSpec:
    """A torchvision ``architecture`` with the uploaded safetensors state dict ``data``."""
    if architecture not in UPLOAD_ARCHITECTURES:
        raise ModelLoadError(f"Unknown architecture {architecture!r}; supported: "
                             f"{', '.join(UPLOAD_ARCHITECTURES)}.")
    check_model_upload_size(len(data), file_name)
    entries = safetensors_header(data, file_name)
    head_key = UPLOAD_ARCHITECTURES[architecture]
    head = entries.get(head_key)
    if head is None or len(head.shape) != 2:
        raise ModelLoadError(f"{file_name} has no {head_key!r} of shape [classes, features], "
                             f"so it is not a {architecture} state dict.")
    n_classes = int(head.shape[0])
    if n_classes > limits.MAX_MODEL_CLASSES:
        raise ModelLoadError(f"{file_name} has a head of {n_classes:,} classes; at most "
                             f"{limits.MAX_MODEL_CLASSES:,} are accepted.")
    if class_names is not None and len(class_names) != n_classes:
        raise ModelLoadError(f"The class-names file lists {len(class_names)} names but the "
                             f"weights have {n_classes} classes.")
    network = network_from_file(data, entries, architecture, n_classes, file_name)
    digest = upload_digest(data, architecture=architecture, class_names=class_names)
    return build_spec(
        f"upload:{architecture}:{digest[:12]}", network, "image",
        class_names=class_names or tuple(f"class {i}" for i in range(n_classes)),
        title=f"Your {architecture} ({file_name}, {n_classes} classes)",
        description=f"Uploaded safetensors weights (upload sha256 {digest[:12]}…) on torchvision's "
                    f"{architecture}; ImageNet normalisation, {CROP}x{CROP} centre crop.",
        input_size=CROP, mean=IMAGENET_MEAN, std=IMAGENET_STD, source="upload",
        weights_sha256=digest, preprocess=partial(image_preprocess, resize=RESIZE, crop=CROP),
        metadata={"architecture": architecture, "file": file_name})


def network_from_file(data: bytes, entries: Mapping[str, TensorEntry], architecture: str,
                      n_classes: int, file_name: str) -> nn.Module:
    """``architecture`` holding exactly the file's tensors. The network is laid out on the
    meta device first (no memory, no random initialisation), its every parameter and buffer
    compared with the header, and only then filled with the file's own tensors (``assign``):
    what it holds is what the upload carries, converted to float32."""
    with torch.device("meta"):
        skeleton = torchvision.models.get_model(architecture, weights=None,
                                                num_classes=n_classes)
    expected = {key: tuple(value.shape) for key, value in skeleton.state_dict().items()}
    check_shapes(entries, expected, type(skeleton).__name__, file_name)
    try:
        state = load_safetensors_bytes(data)
    except (SafetensorError, ValueError) as error:
        raise ModelLoadError(f"{file_name} is not a valid safetensors file: {error}") from error
    floating = {key for key, value in skeleton.state_dict().items() if value.is_floating_point()}
    state = {key: value.float() if key in floating and not value.is_floating_point() else value
             for key, value in state.items()}
    skeleton.load_state_dict(state, strict=True, assign=True)
    return skeleton.float()
