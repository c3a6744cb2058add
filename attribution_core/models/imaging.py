"""Image conversions shared by the image models: PIL image <-> model tensor <-> display array."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from attribution_core.models.spec import ModelLoadError


def pil_to_unit_tensor(image: Image.Image, size: tuple[int, int], channels: int,
                       invert_if_light: bool = False) -> torch.Tensor:
    """Resize to ``size`` (height, width) and scale to [0, 1]: ``[1, channels, H, W]`` float32.

    ``invert_if_light`` flips a dark-on-light image (a digit drawn on white paper) to the
    light-on-dark convention a model trained on such data expects; it looks at the border,
    which is background in both conventions.
    """
    if not isinstance(image, Image.Image):
        raise ModelLoadError(f"Expected a PIL image, got {type(image).__name__}.")
    mode = "L" if channels == 1 else "RGB"
    converted = image.convert(mode)
    if converted.size != (size[1], size[0]):
        converted = converted.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    array = np.asarray(converted, dtype=np.float32) / 255.0
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    if invert_if_light:
        border = np.concatenate([array[:, 0].ravel(), array[:, -1].ravel(),
                                 array[:, :, 0].ravel(), array[:, :, -1].ravel()])
        if border.mean() > 0.5:
            array = 1.0 - array
    return torch.from_numpy(np.ascontiguousarray(array)).unsqueeze(0)


def unit_tensor_to_display(tensor: torch.Tensor) -> np.ndarray:
    """``[C, H, W]`` or ``[1, C, H, W]`` in [0, 1] -> ``H x W x 3`` uint8 (grey repeated)."""
    data = tensor.detach().cpu().float()
    if data.dim() == 4:
        if data.shape[0] != 1:
            raise ValueError(f"Expected one image, got a batch of {data.shape[0]}.")
        data = data[0]
    if data.dim() != 3:
        raise ValueError(f"Expected [C, H, W], got shape {tuple(data.shape)}.")
    if data.shape[0] == 1:
        data = data.expand(3, -1, -1)
    array = (data.clamp(0.0, 1.0).numpy().transpose(1, 2, 0) * 255.0).round()
    return array.astype(np.uint8)

