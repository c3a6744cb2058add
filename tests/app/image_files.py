"""Image files built in memory for upload tests: good ones in every format, and bad ones."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def gradient_image(width: int = 40, height: int = 30, mode: str = "RGB") -> Image.Image:
    """A non-symmetric picture so that rotations and crops are detectable."""
    ys, xs = np.mgrid[0:height, 0:width]
    red = (xs * 255 // max(width - 1, 1)).astype(np.uint8)
    green = (ys * 255 // max(height - 1, 1)).astype(np.uint8)
    blue = np.full_like(red, 60)
    return Image.fromarray(np.stack([red, green, blue], axis=2), mode="RGB").convert(mode)


def png_bytes(width: int = 40, height: int = 30) -> bytes:
    return encode(gradient_image(width, height), "PNG")


def truncated_png() -> bytes:
    data = png_bytes(64, 64)
    return data[: len(data) // 2]


def text_file_as_png() -> bytes:
    return b"This is a text file, not an image.\n" * 20


def one_pixel_png() -> bytes:
    return encode(Image.new("RGB", (1, 1), (255, 0, 0)), "PNG")


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))


def bomb_png(side: int = 12000) -> bytes:
    """A valid, highly compressible greyscale PNG of side x side pixels (~150 kB on disk)."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    compressor = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + pixels
    parts = [compressor.compress(row) for _ in range(side)]
    parts.append(compressor.flush())
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", b"".join(parts))
            + _chunk(b"IEND", b""))


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (24, 24), colour) for colour in
              ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def cmyk_jpeg() -> bytes:
    return encode(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG")  # red in CMYK


def sixteen_bit_png() -> bytes:
    ramp = np.tile(np.linspace(0, 65535, 32).astype(np.uint16), (32, 1))
    return encode(Image.fromarray(ramp), "PNG")


def rgba_png() -> bytes:
    image = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    image.putpixel((0, 0), (0, 0, 0, 255))
    return encode(image, "PNG")


def rotated_jpeg() -> bytes:
    """A 40x30 JPEG whose EXIF says "rotate 90° clockwise to display" (orientation 6)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(gradient_image(40, 30), "JPEG", exif=exif.tobytes(), quality=95)
