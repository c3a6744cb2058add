"""Models a user uploads: a torchvision architecture with a safetensors state dict, and the
optional class-names file that goes with it.

Nothing here unpickles: weights must be safetensors (pickles and torch.save zip archives are
refused before any parsing, by :func:`loaders.check_safetensors_bytes`). The head size is read
from the state dict, so a 5-class fine-tuned ResNet loads without being told it has 5 classes.
Every upload is content-hashed (sha256): that hash is the model's ``weights_sha256`` and so the
result cache's key. The spec is built but never registered: the dashboard keeps it in the
uploading session only (dashboard/widgets/session_models.py).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from functools import partial

import torchvision
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes

from attribution_core.identity import upload_digest
from attribution_core.models.loaders import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    check_safetensors_bytes,
    image_preprocess,
    load_state,
)
from attribution_core.models.plugin_specs import build_spec
from attribution_core.models.spec import ModelLoadError, ModelSpec

MODEL_UPLOAD_VARIABLE = "IG_DASHBOARD_MAX_MODEL_UPLOAD_MB"
DEFAULT_MODEL_UPLOAD_MB = 400  # resnet50 is ~100 MB, vit_b_16 ~330 MB in float32 (fp16: half)
MAX_CLASS_NAMES = 100_000
MAX_CLASS_NAME_CHARS = 200
MAX_CLASS_FILE_BYTES = 4 * 2**20
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


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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
    if len(names) > MAX_CLASS_NAMES:
        raise ModelLoadError(f"{file_name} holds {len(names):,} names; at most "
                             f"{MAX_CLASS_NAMES:,} are accepted.")
    long = next((n for n in names if len(n) > MAX_CLASS_NAME_CHARS), None)
    if long is not None:
        raise ModelLoadError(f"{file_name}: the class name {long[:40]!r}… is longer than "
                             f"{MAX_CLASS_NAME_CHARS} characters.")
    return tuple(names)


def torchvision_upload_spec(data: bytes, architecture: str,
                            class_names: Sequence[str] | None = None,
                            file_name: str = "the upload") -> ModelSpec:
    """A torchvision ``architecture`` with the uploaded safetensors state dict ``data``."""
    if architecture not in UPLOAD_ARCHITECTURES:
        raise ModelLoadError(f"Unknown architecture {architecture!r}; supported: "
                             f"{', '.join(UPLOAD_ARCHITECTURES)}.")
    check_model_upload_size(len(data), file_name)
    check_safetensors_bytes(data)
    try:
        state = load_safetensors_bytes(data)
    except (SafetensorError, ValueError) as error:
        raise ModelLoadError(f"{file_name} is not a valid safetensors file: {error}") from error
    head_key = UPLOAD_ARCHITECTURES[architecture]
    head = state.get(head_key)
    if head is None or head.dim() != 2:
        raise ModelLoadError(f"{file_name} has no {head_key!r} of shape [classes, features], "
                             f"so it is not a {architecture} state dict.")
    n_classes = int(head.shape[0])
    if class_names is not None and len(class_names) != n_classes:
        raise ModelLoadError(f"The class-names file lists {len(class_names)} names but the "
                             f"weights have {n_classes} classes.")
    network = torchvision.models.get_model(architecture, weights=None, num_classes=n_classes)
    load_state(network, state, file_name)
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
