"""Small hostile uploads, built in memory: each one is cheap to make but was expensive to read.

Shared by the unit tests (core parsing), the app tests (the pages) and
``benchmarks/hostile_uploads.py`` (time to the message, before and after). Every builder is
linear in its size argument, so a test can ask for a size that made the old quadratic code take
seconds without paying for it here.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

from PIL import Image


def duplicate_header_csv(columns: int = 160_000) -> bytes:
    """A header of ``columns`` copies of one name (and one data row)."""
    return (",".join(["a"] * columns) + "\n" + ",".join(["1"] * columns) + "\n").encode()


def long_header_field_csv(characters: int = 200_000) -> bytes:
    """One header name longer than the csv module's default field limit (131,072)."""
    return ("x" * characters + ",b\n1,2\n").encode()


def _ifd(entries: list[tuple[int, int, int, int]], next_offset: int) -> bytes:
    """A little-endian TIFF directory: (tag, type, count, value) entries, sorted by tag."""
    body = struct.pack("<H", len(entries))
    for tag, kind, count, value in sorted(entries):
        packed = struct.pack("<H", value) + b"\0\0" if kind == 3 else struct.pack("<I", value)
        body += struct.pack("<HHI", tag, kind, count) + packed
    return body + struct.pack("<I", next_offset)


def _page_entries(side: int, strip_at: int, with_size: bool = True
                  ) -> list[tuple[int, int, int, int]]:
    entries = [(258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1), (273, 4, 1, strip_at),
               (277, 3, 1, 1), (278, 3, 1, side), (279, 4, 1, side * side)]
    if with_size:
        entries += [(256, 3, 1, side), (257, 3, 1, side)]
    return entries


def many_page_tiff(pages: int = 64_000, side: int = 8) -> bytes:
    """A grey TIFF of ``pages`` tiny pages that all share one strip of pixels."""
    strip_at = 8
    strip = bytes(range(side * side))
    first_ifd = strip_at + len(strip)
    ifd_size = 2 + 9 * 12 + 4
    parts = [b"II*\0" + struct.pack("<I", first_ifd), strip]
    for page in range(pages):
        following = first_ifd + (page + 1) * ifd_size if page + 1 < pages else 0
        parts.append(_ifd(_page_entries(side, strip_at), following))
    return b"".join(parts)


def sizeless_second_page_tiff(side: int = 8) -> bytes:
    """Two pages; the second has no width or length (Pillow: 'Missing dimensions')."""
    strip_at = 8
    strip = bytes(side * side)
    first_ifd = strip_at + len(strip)
    first = _ifd(_page_entries(side, strip_at), 0)
    second_at = first_ifd + len(first)
    first = _ifd(_page_entries(side, strip_at), second_at)
    second = _ifd(_page_entries(side, strip_at, with_size=False), 0)
    return b"II*\0" + struct.pack("<I", first_ifd) + strip + first + second


def solid_png(side: int = 6324, mode: str = "RGB") -> bytes:
    """A flat picture: tiny as a file, ``side``² pixels once decoded ("I;16": 16-bit grey)."""
    colour = 30000 if mode == "I;16" else (200, 30, 30) if mode == "RGB" else 128
    buffer = io.BytesIO()
    Image.new(mode, (side, side), colour).save(buffer, format="PNG", compress_level=9)
    return buffer.getvalue()


def tiny_png(side: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (side, side), 90).save(buffer, format="PNG")
    return buffer.getvalue()


def zip_of(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members:
            archive.writestr(name, content)
    return buffer.getvalue()


def deep_names_zip(members: int = 16, depth: int = 32_000) -> bytes:
    """``members`` copies of ``x.png``, each ``depth`` folders deep, told apart only at the top
    (so a name-shortening that compares suffixes has to walk the whole depth)."""
    deep = "d/" * depth
    return zip_of([(f"{index}/{deep}x.png", tiny_png()) for index in range(members)])


def many_members_zip(members: int = 200_000, declared: int | None = None) -> bytes:
    """``members`` empty stored files, written by hand (zipfile would take seconds); the end
    record claims ``declared`` entries when given (a lie zipfile does not check)."""
    local, central = [], []
    offset = 0
    crc = zlib.crc32(b"")
    for index in range(members):
        name = f"{index}.txt".encode()
        header = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, 0, 0,
                             len(name), 0) + name
        central.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, crc, 0,
                                   0, len(name), 0, 0, 0, 0, 0, offset) + name)
        local.append(header)
        offset += len(header)
    directory = b"".join(central)
    # The classic record's field is 16 bits; zipfile reads the whole directory whatever it says.
    count = min(members if declared is None else declared, 0xFFFF)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(directory), offset, 0)
    return b"".join(local) + directory + end


def big_pixels_zip(images: int = 10, side: int = 6324) -> bytes:
    """A zip of flat PNGs: about 1.3 MB that decodes to ``images`` x ``side``² RGB pixels."""
    picture = solid_png(side)
    return zip_of([(f"flat_{index}.png", picture) for index in range(images)])


def many_frame_gif(frames: int = 200, side: int = 8) -> bytes:
    pictures = [Image.new("L", (side, side), index % 256) for index in range(frames)]
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:])
    return buffer.getvalue()


def long_label_set(labels: int = 500, characters: int = 2_000) -> str:
    """Zero-shot labels as typed on the text page: ``label: description`` per line."""
    return "\n".join(f"class{index}: " + "word " * (characters // 5) for index in range(labels))
