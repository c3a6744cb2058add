"""Images in and out of the core: decode and validate uploads, preprocess, baselines, regions.

No Streamlit here: the dashboard, scripts and tests share one decoding path, so an upload that is
rejected in the browser is rejected the same way everywhere, with a message a person can act on.
"""

from __future__ import annotations

import io
import itertools
import math
import struct
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from attribution_core.limits import MAX_FRAMES_COUNTED, MAX_IMAGE_PIXELS, MAX_KEPT_SIDE

MAX_PIXELS = MAX_IMAGE_PIXELS
MIN_SIDE = 4
MAX_UPLOAD_BYTES = 50 * 1024**2
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")
UPLOAD_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff", "gif")
BASELINE_KINDS = ("black", "white", "blurred", "noise", "mean", "uploaded")
View = Literal["signed", "positive", "absolute"]
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N"}
_ROWS_PER_BLOCK = 256  # wide-integer images are rescaled in blocks: no full float copy
# What Pillow raises on malformed headers or frames (a TIFF page without a size: TypeError).
_DAMAGED = (OSError, SyntaxError, ValueError, TypeError, EOFError, struct.error, KeyError,
            IndexError)


class ImageInputError(ValueError):
    """An upload that cannot be used; the message says why and what to do instead."""


@dataclass(frozen=True)
class DecodedImage:
    """A validated 8-bit RGB or L image plus what was done to get it there."""

    image: Image.Image
    source_format: str
    source_mode: str
    source_size: tuple[int, int]
    notes: tuple[str, ...]


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


# -- decoding --------------------------------------------------------------------------------

def decode_image(data: bytes, *, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE,
                 max_bytes: int = MAX_UPLOAD_BYTES, max_side: int | None = MAX_KEPT_SIDE
                 ) -> DecodedImage:
    """Decode an upload into an 8-bit RGB or L image, or raise :class:`ImageInputError`.

    The size is checked from the header *before* pixels are decoded, so a small file that claims
    a huge canvas (a decompression bomb) costs nothing. Only the listed formats' decoders run.
    Frames are counted by seeking one at a time up to ``MAX_FRAMES_COUNTED`` (Pillow's
    ``n_frames`` walks every page of a TIFF in quadratic time); only the first frame is decoded.
    With ``max_side``, the result is box-reduced by a whole factor until its longer side fits,
    so a session keeps megabytes, not the full canvas (``source_size`` keeps the original).
    """
    if not data:
        raise ImageInputError(
            "The file is empty. Upload a PNG, JPEG, WebP, BMP, TIFF or GIF image.")
    if len(data) > max_bytes:
        raise ImageInputError(
            f"The file is {len(data) / 1024**2:.0f} MB; the limit is {max_bytes / 1024**2:.0f} MB."
        )
    with warnings.catch_warnings():
        # Pillow warns (and above twice its limit raises) on huge canvases; we apply our own cap.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = _open(data, max_pixels)
        width, height = image.size
        if width * height > max_pixels:
            raise ImageInputError(_too_large_message((width, height), max_pixels))
        if min(width, height) < min_side:
            raise ImageInputError(
                f"The image is {width}x{height} pixels; at least {min_side}x{min_side} is needed "
                "for an explanation to mean anything."
            )
        source_format, source_mode = image.format or "?", image.mode
        notes: list[str] = []
        frames, damaged_frame = _frames_up_to(image, MAX_FRAMES_COUNTED)
        if frames > 1 or damaged_frame:
            image = _open(data, max_pixels)  # a fresh handle: frame 0, untouched by seeking
            count = f"{frames}" if frames < MAX_FRAMES_COUNTED else f"{MAX_FRAMES_COUNTED}+"
            notes.append(f"frame {frames + 1} could not be read; the first frame is used"
                         if damaged_frame else
                         f"animated or multi-page image with {count} frames: the first frame "
                         "is used")
        try:
            factor = _reduction(image.size, max_side)
            if factor > 1 and image.format == "JPEG":
                # JPEG decodes straight at 1/2, 1/4 or 1/8 scale: the full canvas is never held.
                image.draft(image.mode, (width // factor, height // factor))
            image.load()
            image = _apply_orientation(image, notes)
            image = _to_eight_bit(image, notes)
            image = _reduced(image, max_side, notes)
        except _DAMAGED as error:
            raise ImageInputError(
                "The image is damaged or truncated (decoding stopped part-way). "
                "Re-export or re-download it and upload it again."
            ) from error
    return DecodedImage(image, source_format, source_mode, (width, height), tuple(notes))


def _open(data: bytes, max_pixels: int) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=list(ACCEPTED_FORMATS))
    except Image.DecompressionBombError as error:
        raise ImageInputError(_too_large_message(None, max_pixels)) from error
    except (UnidentifiedImageError, *_DAMAGED) as error:
        raise ImageInputError(
            "This file is not an image we can read (accepted: PNG, JPEG, WebP, BMP, TIFF, "
            "GIF). It may be another kind of file with an image extension."
        ) from error


def _frames_up_to(image: Image.Image, limit: int) -> tuple[int, bool]:
    """(frames found, counting at most ``limit``; whether the next frame was unreadable).

    Seeks one frame at a time and stops at ``limit``: never ``n_frames``, which reads every
    page of a TIFF (quadratically in Pillow) before answering.
    """
    frames = 1
    while frames < limit:
        try:
            image.seek(frames)
        except EOFError:
            return frames, False
        except _DAMAGED:
            return frames, True
        frames += 1
    return frames, False


def _reduction(size: tuple[int, int], max_side: int | None) -> int:
    """The whole factor that brings the longer side down to ``max_side`` (1: keep as is)."""
    if max_side is None or max(size) <= max_side:
        return 1
    return math.ceil(max(size) / max_side)


def _reduced(image: Image.Image, max_side: int | None, notes: list[str]) -> Image.Image:
    factor = _reduction(image.size, max_side)
    if factor == 1:
        return image
    # reduce() averages each factor x factor box: no aliasing, and a model-sized resize of the
    # result is close to one of the original (both are box averages).
    reduced = image.reduce(factor)
    notes.append(f"reduced from {image.width}x{image.height} to {reduced.width}x"
                 f"{reduced.height} pixels (models see far fewer)")
    return reduced


def _too_large_message(size: tuple[int, int] | None, max_pixels: int) -> str:
    claimed = f"{size[0]}x{size[1]} pixels ({size[0] * size[1] / 1e6:.0f} MP)" if size else \
        "far larger than allowed"
    return (f"The image is {claimed}; the limit is {max_pixels / 1e6:.0f} MP to protect the "
            "server's memory. Downscale it and upload it again.")


def _apply_orientation(image: Image.Image, notes: list[str]) -> Image.Image:
    orientation = image.getexif().get(0x0112, 1)
    if orientation in (None, 1):
        return image
    rotated = ImageOps.exif_transpose(image)
    notes.append(f"EXIF orientation {orientation} applied")
    return rotated if rotated is not None else image


def _to_eight_bit(image: Image.Image, notes: list[str]) -> Image.Image:
    """Any supported mode -> 8-bit "RGB" or "L" (alpha composited on white)."""
    mode = image.mode
    if mode in ("RGB", "L"):
        return image
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        return _wide_to_eight_bit(image, notes)
    if mode == "CMYK":
        notes.append("CMYK converted to RGB")
        return image.convert("RGB")
    if mode == "1":
        return image.convert("L")
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
        mode = image.mode
        if mode == "RGB":
            return image
    if mode in ("RGBA", "LA", "RGBa", "La"):
        canvas = Image.new("RGBA", image.size, (255, 255, 255, 255))
        canvas.alpha_composite(image.convert("RGBA"))
        notes.append("transparent areas placed on white")
        return canvas.convert("RGB" if mode.startswith("RGB") else "L")
    notes.append(f"{mode} converted to RGB")
    return image.convert("RGB")


def _wide_to_eight_bit(image: Image.Image, notes: list[str]) -> Image.Image:
    """16-bit, 32-bit integer or float grey -> "L", one block of rows at a time in float32:
    neither a float copy nor a full-size integer copy of the picture is ever made (float64
    made a 40 MP scan cost 1.3 GB)."""
    if image.mode == "F":
        low, high = _finite_range(image)
        span = max(high - low, 1e-12)
        notes.append("floating-point image rescaled to 8 bits")
    else:
        low = 0.0
        top = image.getextrema()[1]
        span = 65535.0 if image.mode in _SIXTEEN_BIT_MODES or float(top) > 255 else 255.0
        notes.append("16-bit image reduced to 8 bits")
    eight_bit = np.empty((image.height, image.width), dtype=np.uint8)
    for start, block in _row_blocks(image):
        scaled = np.clip((block.astype(np.float32) - np.float32(low)) / np.float32(span),
                         0.0, 1.0) * 255.0
        eight_bit[start:start + block.shape[0]] = np.nan_to_num(scaled).round()
    return Image.fromarray(eight_bit, mode="L")


def _row_blocks(image: Image.Image) -> Iterator[tuple[int, np.ndarray]]:
    for start in range(0, image.height, _ROWS_PER_BLOCK):
        bottom = min(start + _ROWS_PER_BLOCK, image.height)
        yield start, np.asarray(image.crop((0, start, image.width, bottom)))


def _finite_range(image: Image.Image) -> tuple[float, float]:
    """Lowest and highest finite value of an "F" image (0, 1 when it has none)."""
    low, high = math.inf, -math.inf
    for _, block in _row_blocks(image):
        finite = block[np.isfinite(block)]
        if finite.size:
            low, high = min(low, float(finite.min())), max(high, float(finite.max()))
    return (low, high) if low <= high else (0.0, 1.0)


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
