"""Images in and out of the core: decode and validate uploads, preprocess, baselines, regions.

No Streamlit here: the dashboard, scripts and tests share one decoding path, so an upload that is
rejected in the browser is rejected the same way everywhere, with a message a person can act on.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageOps

# Decoding lives in image_decode; callers keep using image.decode_image and friends.
from attribution_core.modalities.image_decode import ACCEPTED_FORMATS as ACCEPTED_FORMATS
from attribution_core.modalities.image_decode import MAX_PIXELS as MAX_PIXELS
from attribution_core.modalities.image_decode import MAX_UPLOAD_BYTES as MAX_UPLOAD_BYTES
from attribution_core.modalities.image_decode import MIN_SIDE as MIN_SIDE
from attribution_core.modalities.image_decode import UPLOAD_EXTENSIONS as UPLOAD_EXTENSIONS
from attribution_core.modalities.image_decode import DecodedImage as DecodedImage
from attribution_core.modalities.image_decode import ImageInputError
from attribution_core.modalities.image_decode import decode_image as decode_image

BASELINE_KINDS = ("black", "white", "blurred", "noise", "mean", "uploaded")
View = Literal["signed", "positive", "absolute"]


@dataclass(frozen=True)
class ImagePreprocessing:
    """How a model wants its pixels: size, channels and per-channel normalisation.

    Pixels are scaled to [0, 1], optionally inverted (dark ink on light paper for a model trained
    on light-on-dark digits), then normalised as ``(pixel - mean) / std`` per channel.
    """

    size: tuple[int, int]
    channels: int = 3
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    invert: bool = False
    resize: Literal["fit", "squash"] = "fit"

    def _stats(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.as_tensor(self.mean, dtype=dtype).reshape(-1, 1, 1)
        std = torch.as_tensor(self.std, dtype=dtype).reshape(-1, 1, 1)
        return mean.expand(self.channels, 1, 1), std.expand(self.channels, 1, 1)

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """[.., C, H, W] pixels in [0, 1] -> model space."""
        mean, std = self._stats(pixels.dtype)
        return (pixels - mean.to(pixels.device)) / std.to(pixels.device)

    def denormalise(self, values: torch.Tensor) -> torch.Tensor:
        """Model space -> pixels in [0, 1] (not clipped)."""
        mean, std = self._stats(values.dtype)
        return values * std.to(values.device) + mean.to(values.device)

    def input_box(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel model-space bounds of valid pixels, shaped [C, 1, 1] (lo, hi)."""
        lo = self.normalise(torch.zeros(self.channels, 1, 1, dtype=torch.float64))
        hi = self.normalise(torch.ones(self.channels, 1, 1, dtype=torch.float64))
        return torch.minimum(lo, hi), torch.maximum(lo, hi)


# -- preprocessing ---------------------------------------------------------------------------

def resize_for_model(image: Image.Image, prep: ImagePreprocessing) -> Image.Image:
    """Convert channels and resize (centre crop to the aspect ratio first with ``fit``)."""
    converted = image.convert("L" if prep.channels == 1 else "RGB")
    height, width = prep.size
    # BOX averages every source pixel: no aliasing when a photo shrinks to a few pixels.
    if prep.resize == "fit":
        return ImageOps.fit(converted, (width, height), method=Image.Resampling.BOX)
    return converted.resize((width, height), resample=Image.Resampling.BOX)


def to_model_tensor(image: Image.Image, prep: ImagePreprocessing,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A decoded image -> a [1, C, H, W] model input."""
    # Scaled in the model's own dtype (float32 by default), after the resize: never a float64
    # copy of a large picture.
    eight_bit = np.asarray(resize_for_model(image, prep), dtype=np.uint8)
    eight_bit = eight_bit[None] if eight_bit.ndim == 2 else eight_bit.transpose(2, 0, 1)
    pixels = torch.tensor(eight_bit, dtype=dtype) / 255.0
    if prep.invert:
        pixels = 1.0 - pixels
    return prep.normalise(pixels).unsqueeze(0)


def to_display_array(values: torch.Tensor, prep: ImagePreprocessing) -> np.ndarray:
    """A [C, H, W] (or [1, C, H, W]) model-space tensor -> a [H, W, 3] uint8 picture."""
    tensor = values.detach().cpu().double()
    if tensor.dim() == 4:
        tensor = tensor[0]
    pixels = prep.denormalise(tensor).clamp(0, 1)
    if prep.invert:
        pixels = 1.0 - pixels
    array = (pixels.numpy() * 255.0).round().astype(np.uint8).transpose(1, 2, 0)
    return np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array


# -- baselines -------------------------------------------------------------------------------

def make_baseline(kind: str, inputs: torch.Tensor, prep: ImagePreprocessing, *, seed: int = 0,
                  blur_sigma: float | None = None, dataset_mean: torch.Tensor | None = None,
                  uploaded: Image.Image | None = None) -> torch.Tensor:
    """A baseline in model space with the shape of ``inputs`` ([1, C, H, W]).

    ``black`` and ``white`` are the normalised black and white images (not zeros); ``noise`` is
    uniform pixel noise from a seeded generator, so the same seed gives the same explanation.
    """
    shape = inputs.shape
    if kind in ("black", "white"):
        # With invert, "black" still means what the person sees: dark pixels on screen.
        level = 0.0 if (kind == "black") != prep.invert else 1.0
        pixels = torch.full(shape[1:], level, dtype=torch.float64)
        return prep.normalise(pixels).to(inputs.dtype).unsqueeze(0).to(inputs.device)
    if kind == "noise":
        generator = torch.Generator().manual_seed(seed)
        pixels = torch.rand(shape[1:], generator=generator, dtype=torch.float64)
        return prep.normalise(pixels).to(inputs.dtype).unsqueeze(0).to(inputs.device)
    if kind == "blurred":
        sigma = blur_sigma if blur_sigma is not None else max(shape[-1], shape[-2]) / 16.0
        pixels = prep.denormalise(inputs[0].detach().cpu().double())
        return prep.normalise(gaussian_blur(pixels, sigma)).to(inputs.dtype).unsqueeze(0).to(
            inputs.device)
    if kind == "mean":
        if dataset_mean is not None:
            return torch.broadcast_to(dataset_mean.to(inputs), shape).clone()
        # Normalisation by the dataset's own statistics puts its mean at zero.
        return torch.zeros_like(inputs)
    if kind == "uploaded":
        if uploaded is None:
            raise ImageInputError("Upload a baseline image first (or pick another baseline).")
        return to_model_tensor(uploaded, prep, dtype=inputs.dtype).to(inputs.device)
    raise ValueError(f"Unknown baseline {kind!r}; choose one of {', '.join(BASELINE_KINDS)}.")


def gaussian_blur(pixels: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [C, H, W] with reflect padding (no edge darkening)."""
    if sigma <= 0:
        return pixels.clone()
    radius = max(1, int(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=pixels.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = pixels.shape[0]
    batch = pixels.unsqueeze(0)
    pad_h = min(radius, pixels.shape[-2] - 1)
    pad_w = min(radius, pixels.shape[-1] - 1)
    batch = torch.nn.functional.pad(batch, (pad_w, pad_w, 0, 0), mode="replicate")
    weight = kernel[radius - pad_w: radius + pad_w + 1].view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    # A kernel cut short by a small image must still sum to 1.
    weight = weight / weight.sum(dim=3, keepdim=True)
    batch = torch.nn.functional.conv2d(batch, weight, groups=channels)
    batch = torch.nn.functional.pad(batch, (0, 0, pad_h, pad_h), mode="replicate")
    weight = kernel[radius - pad_h: radius + pad_h + 1].view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    weight = weight / weight.sum(dim=2, keepdim=True)
    batch = torch.nn.functional.conv2d(batch, weight, groups=channels)
    return batch[0]


# -- reading attributions ------------------------------------------------------------------

def channel_sum(attributions: torch.Tensor) -> np.ndarray:
    """[1, C, H, W] or [C, H, W] attributions -> [H, W] float64 map (sum over channels)."""
    tensor = attributions.detach().cpu().double()
    if tensor.dim() == 4:
        tensor = tensor[0]
    return tensor.sum(dim=0).numpy()


def apply_view(attribution_map: np.ndarray, view: View) -> np.ndarray:
    """signed: as is; positive: negatives set to 0; absolute: magnitudes."""
    if view == "positive":
        return np.clip(attribution_map, 0.0, None)
    if view == "absolute":
        return np.abs(attribution_map)
    return attribution_map


def shared_limit(maps: Sequence[np.ndarray], percentile: float) -> float:
    """One colour-scale limit for several maps: the ``percentile`` of all their magnitudes.

    Sharing it is what makes IG and IG2 comparable side by side; a per-map scale would stretch
    a weak map until it looks as confident as a strong one.
    """
    values = np.concatenate([np.abs(np.asarray(m, dtype=np.float64)).ravel() for m in maps])
    if values.size == 0:
        return 1.0
    limit = float(np.percentile(values, float(np.clip(percentile, 0.0, 100.0))))
    if not np.isfinite(limit) or limit <= 0:
        limit = float(values.max()) if values.size and np.isfinite(values.max()) else 0.0
    return limit if limit > 0 else 1.0


@dataclass(frozen=True)
class Region:
    """One cell of a coarse grid over the image, with its share of the attribution."""

    rank: int
    top: int
    left: int
    bottom: int
    right: int
    attribution: float
    share: float

    @property
    def label(self) -> str:
        rows = f"row {self.top}" if self.bottom - self.top == 1 else \
            f"rows {self.top}-{self.bottom - 1}"
        columns = f"column {self.left}" if self.right - self.left == 1 else \
            f"columns {self.left}-{self.right - 1}"
        return f"{rows}, {columns}"


def ranked_regions(attribution_map: np.ndarray, grid: int = 8, top_k: int | None = None
                   ) -> list[Region]:
    """Split the map into a ``grid`` x ``grid`` of patches and rank them by |attribution|.

    ``share`` is the patch's signed sum divided by the sum of all patches' absolute sums, so
    the shares' magnitudes add up to 100% and a negative share is evidence against the class.
    """
    height, width = attribution_map.shape
    row_edges = np.linspace(0, height, min(grid, height) + 1).round().astype(int)
    col_edges = np.linspace(0, width, min(grid, width) + 1).round().astype(int)
    cells: list[tuple[int, int, int, int, float]] = []
    for top, bottom in itertools.pairwise(row_edges):
        for left, right in itertools.pairwise(col_edges):
            cells.append((int(top), int(left), int(bottom), int(right),
                          float(attribution_map[top:bottom, left:right].sum())))
    mass = sum(abs(cell[4]) for cell in cells)
    cells.sort(key=lambda cell: -abs(cell[4]))
    chosen = cells if top_k is None else cells[:top_k]
    return [
        Region(rank=i + 1, top=t, left=le, bottom=b, right=r, attribution=value,
               share=value / mass if mass > 0 else 0.0)
        for i, (t, le, b, r, value) in enumerate(chosen)
    ]
