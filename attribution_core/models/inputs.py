"""Model inputs from raw values, shared by the pages, the evaluation and the command line.

Pictures and raw feature rows become model tensors here (on the CPU: callers move them), and
tabular baselines are computed in raw units, so every client explains exactly the same tensors.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from attribution_core.modalities import image as image_io
from attribution_core.modalities import tabular as tab_io
from attribution_core.models.spec import LoadedModel, ReferencePool


def image_preprocessing(loaded: LoadedModel, example: torch.Tensor
                        ) -> image_io.ImagePreprocessing:
    meta = loaded.spec.metadata
    channels, height, width = (int(v) for v in example.shape[-3:])
    return image_io.ImagePreprocessing(
        size=(height, width), channels=channels,
        mean=tuple(float(v) for v in meta.get("input_mean", (0.0,))),
        std=tuple(float(v) for v in meta.get("input_std", (1.0,))))


def image_tensor(loaded: LoadedModel, picture: Image.Image) -> torch.Tensor:
    """A decoded picture -> the model's [1, C, H, W] input (CPU, float32, contiguous)."""
    if loaded.preprocess is not None:
        tensor = loaded.preprocess(picture)
    else:
        size = tuple(loaded.spec.metadata.get("input_size", (224, 224)))
        prep = image_io.ImagePreprocessing(size=(int(size[0]), int(size[1])),
                                           channels=int(loaded.spec.metadata.get("channels", 3)))
        tensor = image_io.to_model_tensor(picture, prep)
    if tensor.dim() == 3:
        tensor = tensor.unsqueeze(0)
    return tensor.detach().cpu().float().contiguous()


def display_array(loaded: LoadedModel, values: torch.Tensor,
                  prep: image_io.ImagePreprocessing) -> np.ndarray:
    """Model-space tensor -> H x W x 3 uint8 picture (the model's own postprocess first)."""
    if loaded.postprocess is not None:
        shown = np.asarray(loaded.postprocess(values.detach().cpu()))
        if shown.ndim == 3 and shown.shape[2] == 3 and shown.dtype == np.uint8:
            return shown
    return image_io.to_display_array(values, prep)


def feature_names(loaded: LoadedModel) -> tuple[str, ...]:
    names = loaded.extras.get("feature_names") or loaded.spec.metadata.get("feature_names")
    if not names:
        raise ValueError(f"{loaded.spec.title} does not declare its feature names.")
    return tuple(str(n) for n in names)


def pool_raw(loaded: LoadedModel, pool: ReferencePool) -> np.ndarray:
    """The reference pool in raw units [N, F]."""
    raw = pool.extras.get("raw")
    if raw is not None:
        return np.asarray(raw, dtype=np.float64)
    if loaded.postprocess is not None:
        return np.asarray(loaded.postprocess(pool.inputs), dtype=np.float64)
    return pool.inputs.detach().cpu().double().numpy()


def tabular_baseline_raw(loaded: LoadedModel, kind: str, reference_row: int = 0) -> np.ndarray:
    """A tabular baseline in raw units [F]: training mean / median, zeros or a pool row (for a
    model explained in an encoded space, the kinds of its schema: categorical columns take the
    most frequent category, or "no category")."""
    names = feature_names(loaded)
    if kind != "reference_row" and kind in loaded.extras.get("baseline_raw", {}):
        return np.asarray(loaded.extras["baseline_raw"][kind], dtype=np.float64)
    if kind == "mean" and "train_mean_raw" in loaded.extras:
        return np.asarray(loaded.extras["train_mean_raw"], dtype=np.float64)
    if kind == "median" and "train_median_raw" in loaded.extras:
        return np.asarray(loaded.extras["train_median_raw"], dtype=np.float64)
    if kind == "zeros":
        return np.zeros(len(names))
    if loaded.spec.reference_pool is None:
        raise ValueError(f"{loaded.spec.title} has no data set for the {kind} baseline.")
    raw = pool_raw(loaded, loaded.spec.reference_pool())
    if kind == "reference_row":
        if not 0 <= reference_row < raw.shape[0]:
            raise ValueError(f"Reference row {reference_row} is outside the data set "
                             f"(0..{raw.shape[0] - 1}).")
        return raw[reference_row]
    if kind in ("mean", "median"):
        return raw.mean(axis=0) if kind == "mean" else np.median(raw, axis=0)
    raise ValueError(f"Unknown baseline {kind!r}; choose one of "
                     f"{', '.join(tab_io.BASELINE_KINDS)}.")


def model_rows(loaded: LoadedModel, raw: np.ndarray) -> torch.Tensor:
    """Raw values [F] or [R, F] -> model rows [R, F] (CPU, float32)."""
    if loaded.preprocess is None:
        return torch.as_tensor(np.atleast_2d(raw), dtype=torch.float32)
    return loaded.preprocess(np.atleast_2d(raw)).detach().cpu().float()


def output_probabilities(loaded: LoadedModel, outputs: torch.Tensor) -> torch.Tensor:
    """Class probabilities from a classifier's outputs [..., C], by its declared output kind:
    softmax of logits, or the outputs as they are (clamped to [0, 1]) for a model that already
    gives probabilities (an uploaded ONNX classifier: ``outputs_probabilities``)."""
    if loaded.spec.metadata.get("outputs_probabilities"):
        return outputs.clamp(0.0, 1.0)
    return torch.softmax(outputs, dim=-1)
