"""Decoding uploaded images: validate from the header, count frames, reduce, go to 8 bits.

Split from ``modalities.image`` (which re-exports everything here) so that each stays short.
No Streamlit here: the dashboard, scripts and tests share one decoding path, so an upload that
is rejected in the browser is rejected the same way everywhere, with a message a person can act
on. Every step is bounded by ``attribution_core.limits``: the canvas size is read from the
header before any pixel is decoded, frames are counted only up to a small limit, and wide
pixel types are rescaled in blocks.
"""

from __future__ import annotations

import io
import math
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from attribution_core.limits import MAX_FRAMES_COUNTED, MAX_IMAGE_PIXELS, MAX_KEPT_SIDE

MAX_PIXELS = MAX_IMAGE_PIXELS
MIN_SIDE = 4
MAX_UPLOAD_BYTES = 50 * 1024**2
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")
UPLOAD_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff", "gif")
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
