"""Evaluate-page image uploads (a zip of images, optional masks and labels.csv) -> raw cases.

Bytes in, frozen results out; anything unusable raises :class:`EvaluationInputError` with words
a person can act on, and every member that is left out is listed in ``skipped``. Pixels go
through the same checks as single uploads (``modalities.image``), so an image refused on the
Explain page is refused here for the same reason.

Zip archives are read in memory, never extracted, so paths like ``../x`` cannot escape anywhere.
Declared sizes are checked first (cheap), but a header can lie, so every member is also read
through a bounded read that stops one byte past what is allowed.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO

import numpy as np
from PIL import Image

from attribution_core.evaluation.types import EvaluationInputError, ImageItem
from attribution_core.evaluation.uploads_csv import (
    _cell,
    _listing,
    _parse_label,
    _read_csv_records,
)
from attribution_core.evaluation.zip_directory import (
    check_declared_directory,
    check_member_names,
)
from attribution_core.limits import EVALUATE_MAX_TOTAL_PIXELS
from attribution_core.modalities.image import UPLOAD_EXTENSIONS, ImageInputError, decode_image

# Small members may compress far beyond any ratio (a flat BMP mask is ~99% zeros) and cannot
# hurt anyone, so the ratio test only applies to members that would be large once inflated.
RATIO_CHECK_FLOOR_BYTES = 1 * 2**20
MASK_THRESHOLD = 127  # grey levels above this mark expected pixels
NOT_AN_IMAGE = "not an image (only PNG, JPEG, WebP, BMP, TIFF, GIF are read)"
LABELS_FILE = "labels.csv"


@dataclass(frozen=True)
class ImageUpload:
    items: tuple[ImageItem, ...]
    skipped: tuple[str, ...]


@dataclass(frozen=True)
class _Member:
    info: zipfile.ZipInfo
    path: PurePosixPath

    @property
    def shown(self) -> str:
        return str(self.path)


def read_image_zip(data: bytes, *, max_cases: int = 500, max_total_bytes: int = 200 * 2**20,
                   max_member_bytes: int = 40 * 2**20, max_ratio: float = 200.0,
                   max_total_pixels: int = EVALUATE_MAX_TOTAL_PIXELS) -> ImageUpload:
    """A zip of images (with optional masks and ``labels.csv``) -> image cases.

    A mask is ``<stem>_mask.<ext>`` or ``masks/<stem>.<ext>`` at any depth; it is read as grey
    levels and pixels above 127 count as expected-to-matter. ``labels.csv`` has columns
    ``file,label`` (an integer class). ``max_total_pixels`` bounds the decoded pictures held
    in memory together (a small PNG can hold a large canvas); each picture is first reduced
    to ``MAX_KEPT_SIDE`` as on the image page, and its mask with it.
    """
    archive = _open_zip(data)
    check_member_names([info.filename for info in archive.infolist()])
    members = [m for m in (_member(info) for info in archive.infolist()) if m is not None]
    if not members:
        raise EvaluationInputError("The zip is empty: it holds no files (folders, __MACOSX and "
                                   "hidden files are ignored).")
    if len(members) > 2 * max_cases + 1:
        raise EvaluationInputError(
            f"The zip holds {len(members):,} files; at most {2 * max_cases + 1:,} are read "
            f"({max_cases:,} images, each with a mask, plus {LABELS_FILE}). Upload fewer cases.")
    _check_declared_sizes(members, max_total_bytes, max_member_bytes, max_ratio)

    skipped: list[str] = []
    images, masks, labels_members = [], [], []
    seen_paths: set[str] = set()
    for member in sorted(members, key=lambda m: m.shown):
        if member.shown in seen_paths:
            skipped.append(f"{member.shown}: appears twice in the zip; the first copy is used")
            continue
        seen_paths.add(member.shown)
        if member.path.name.lower() == LABELS_FILE:
            labels_members.append(member)
        elif member.path.suffix.lower().lstrip(".") not in UPLOAD_EXTENSIONS:
            skipped.append(f"{member.shown}: {NOT_AN_IMAGE}")
        elif _mask_stem(member.path) is not None:
            masks.append(member)
        else:
            images.append(member)
    if len(images) > max_cases:
        raise EvaluationInputError(f"The zip holds {len(images):,} images; at most "
                                   f"{max_cases:,} are evaluated at once. Upload fewer.")
    if len(labels_members) > 1:
        raise EvaluationInputError("The zip holds several label files ("
                                   + ", ".join(m.shown for m in labels_members) + "); keep one.")

    budget = _Budget(max_total_bytes, max_member_bytes, max_total_pixels)
    decoded: dict[str, tuple[_Member, Image.Image]] = {}
    for member in images:
        picture = _decode_member(archive, member, budget, skipped)
        if picture is not None:
            decoded[member.shown] = (member, picture)
    if not decoded:
        listed = "; ".join(skipped) if skipped else "nothing else was found"
        raise EvaluationInputError(
            f"The zip holds no images we can read: {len(skipped)} file(s) were skipped: {listed}")

    found_masks = _attach_masks(archive, masks, decoded, budget, skipped)
    names = _unique_names([member.path for member, _ in decoded.values()])
    labels = (_read_labels(archive, labels_members[0], budget, decoded, names, skipped)
              if labels_members else {})
    items = [ImageItem(name=names[key], image=picture, mask=found_masks.get(key),
                       label=labels.get(key)) for key, (_, picture) in decoded.items()]
    return ImageUpload(tuple(sorted(items, key=lambda item: item.name)), tuple(skipped))


class _Budget:
    """What may still be read: bytes over all members, per member, and decoded pixels."""

    def __init__(self, total_bytes: int, member_bytes: int, total_pixels: int) -> None:
        self.bytes_left = total_bytes
        self.member_bytes = member_bytes
        self.pixels_left = total_pixels
        self.total_pixels = total_pixels

    def read(self, archive: zipfile.ZipFile, member: _Member) -> bytes:
        limit = min(self.member_bytes, self.bytes_left)
        with archive.open(member.info) as handle:
            content = bounded_read(handle, limit, member.shown)
        self.bytes_left -= len(content)
        return content

    def spend_pixels(self, width: int, height: int) -> None:
        self.pixels_left -= width * height
        if self.pixels_left < 0:
            raise EvaluationInputError(
                f"The images hold more than {self.total_pixels / 1e6:,.0f} megapixels together; "
                "downscale them or upload fewer at once.")


def bounded_read(handle: IO[bytes], limit: int, name: str) -> bytes:
    """Read at most ``limit`` bytes, raising if there are more: a lying size header is caught
    after ``limit + 1`` bytes rather than after the whole inflated stream."""
    content = handle.read(limit + 1)
    if len(content) > limit:
        raise EvaluationInputError(
            f"{name} inflates to more than {limit / 2**20:,.1f} MB (its header claims less); "
            "the zip looks malformed or hostile and was not read.")
    return content


def _open_zip(data: bytes) -> zipfile.ZipFile:
    if not data:
        raise EvaluationInputError("The upload is empty; upload a .zip of images.")
    check_declared_directory(data)  # before zipfile turns every entry into an object
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as error:
        raise EvaluationInputError(
            "This file is not a zip archive we can read. Put the images (and optional masks "
            "and labels.csv) in a folder and compress it to .zip.") from error


def _member(info: zipfile.ZipInfo) -> _Member | None:
    """The member as a normalised path, or None for folders, macOS metadata and hidden files."""
    if info.is_dir():
        return None
    parts = [p for p in info.filename.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts):
        return None
    return _Member(info, PurePosixPath(*parts))


def _check_declared_sizes(members: Sequence[_Member], max_total: int, max_member: int,
                          max_ratio: float) -> None:
    declared = sum(m.info.file_size for m in members)
    if declared > max_total:
        raise EvaluationInputError(
            f"The zip unpacks to {declared / 2**20:,.1f} MB; at most {max_total / 2**20:,.0f} MB "
            "are accepted. Upload fewer or smaller images.")
    for m in members:
        if m.info.file_size > max_member:
            raise EvaluationInputError(
                f"{m.shown} unpacks to {m.info.file_size / 2**20:,.1f} MB; at most "
                f"{max_member / 2**20:,.0f} MB per file are accepted.")
        ratio = m.info.file_size / max(m.info.compress_size, 1)
        if m.info.file_size > RATIO_CHECK_FLOOR_BYTES and ratio > max_ratio:
            raise EvaluationInputError(
                f"{m.shown} is compressed {ratio:,.0f} times (at most {max_ratio:,.0f} is "
                "accepted): this looks like a zip bomb, so the zip was not read. Flat "
                "uncompressed BMP or TIFF images can look like this too: save them as PNG.")


def _read_or_note(archive: zipfile.ZipFile, member: _Member, budget: _Budget,
                  skipped: list[str]) -> bytes | None:
    try:
        return budget.read(archive, member)
    except RuntimeError:  # zipfile's word for "encrypted"
        skipped.append(f"{member.shown}: encrypted; save the zip without a password")
    except (NotImplementedError, zipfile.BadZipFile, zlib.error, EOFError, OSError):
        skipped.append(f"{member.shown}: damaged inside the zip, or packed with a compression "
                       "we cannot read; re-create the zip with standard compression")
    return None


def _decode_member(archive: zipfile.ZipFile, member: _Member, budget: _Budget,
                   skipped: list[str]) -> Image.Image | None:
    content = _read_or_note(archive, member, budget, skipped)
    if content is None:
        return None
    try:
        picture = decode_image(content, max_bytes=max(budget.member_bytes, 1)).image
    except ImageInputError as error:
        skipped.append(f"{member.shown}: {error}")
        return None
    budget.spend_pixels(*picture.size)
    return picture


def _mask_stem(path: PurePosixPath) -> str | None:
    """The image stem this path is the mask of, or None when it is not a mask."""
    if path.stem.lower().endswith("_mask") and len(path.stem) > len("_mask"):
        return path.stem[: -len("_mask")]
    if any(part.lower() == "masks" for part in path.parts[:-1]):
        return path.stem
    return None


def _mask_home(path: PurePosixPath) -> PurePosixPath:
    """The folder whose image this mask belongs to (``a/masks/x.png`` -> ``a``)."""
    if path.stem.lower().endswith("_mask"):
        return path.parent
    return next(p.parent for p in path.parents if p.name.lower() == "masks")


def decode_mask(content: bytes, max_bytes: int) -> np.ndarray:
    """A mask image -> bool [H, W]: grey levels above ``MASK_THRESHOLD`` are expected (raises
    ImageInputError for a file that is not a readable picture)."""
    grey = decode_image(content, max_bytes=max_bytes).image.convert("L")
    return np.asarray(grey, dtype=np.uint8) > MASK_THRESHOLD


def _attach_masks(archive: zipfile.ZipFile, masks: Sequence[_Member],
                  decoded: dict[str, tuple[_Member, Image.Image]], budget: _Budget,
                  skipped: list[str]) -> dict[str, np.ndarray]:
    found: dict[str, np.ndarray] = {}
    used_by: dict[str, str] = {}
    for mask in masks:
        stem = _mask_stem(mask.path)
        candidates = [key for key, (m, _) in decoded.items() if m.path.stem == stem]
        if len(candidates) > 1:
            home = _mask_home(mask.path)
            candidates = [k for k in candidates if decoded[k][0].path.parent == home]
        if len(candidates) != 1:
            reason = "no image" if not candidates else "several images"
            skipped.append(f"{mask.shown}: a mask, but {reason} named {stem!r} was found "
                           "next to it; it was not used")
            continue
        key = candidates[0]
        if key in used_by:
            skipped.append(f"{mask.shown}: {key} already has the mask {used_by[key]}; "
                           "this one was not used")
            continue
        content = _read_or_note(archive, mask, budget, skipped)
        if content is None:
            continue
        try:
            expected = decode_mask(content, max_bytes=max(budget.member_bytes, 1))
        except ImageInputError as error:
            skipped.append(f"{mask.shown}: {error} {key} is kept without a mask.")
            continue
        picture = decoded[key][1]
        if expected.shape != (picture.size[1], picture.size[0]):
            skipped.append(
                f"{mask.shown}: the mask is {expected.shape[1]}x{expected.shape[0]} pixels but "
                f"the image {key} is {picture.size[0]}x{picture.size[1]}; "
                f"{key} is kept without a mask.")
            continue
        found[key] = expected
        used_by[key] = mask.shown
    return found


class _SuffixNode:
    """One path ending in the trie of ``_unique_names``: how many paths end this way, and the
    longer endings (one more folder) below it."""

    __slots__ = ("children", "paths")

    def __init__(self) -> None:
        self.paths = 0
        self.children: dict[str, _SuffixNode] = {}


def _unique_names(paths: Sequence[PurePosixPath]) -> dict[str, str]:
    """Full path -> the file name, with as many parent folders as it takes to be unique.

    A trie of the paths' parts read from the file name upwards counts how many paths share
    each ending; a name stops growing at the first ending that only its own path has. Linear
    in the total number of parts (comparing every path's endings with every other's was
    quadratic in the depth: 16 paths 32,000 folders deep took 28 s).
    """
    root = _SuffixNode()
    for path in paths:
        node = root
        for part in reversed(path.parts):
            node = node.children.setdefault(part, _SuffixNode())
            node.paths += 1
    names: dict[str, str] = {}
    for path in paths:
        parts = path.parts
        depth, node = 1, root.children[parts[-1]]
        while depth < len(parts) and node.paths > 1:
            depth += 1
            node = node.children[parts[-depth]]
        names[str(path)] = "/".join(parts[-depth:])
    return names


def _read_labels(archive: zipfile.ZipFile, member: _Member, budget: _Budget,
                 decoded: dict[str, tuple[_Member, Image.Image]], names: dict[str, str],
                 skipped: list[str]) -> dict[str, int]:
    content = _read_or_note(archive, member, budget, skipped)
    if content is None:
        return {}
    header, rows = _read_csv_records(content, what=member.shown)
    columns = {c.lower(): j for j, c in enumerate(header)}
    if "file" not in columns or "label" not in columns:
        raise EvaluationInputError(f"{member.shown} needs the columns file,label; found "
                                   f"{_listing(header)}.")
    # A row may name the file by its path in the zip or by its case name (the bare file name
    # when that is unique).
    lookup = {key: key for key in names} | {name: key for key, name in names.items()}
    labels: dict[str, int] = {}
    for row_number, row in rows:
        file = _cell(row, columns["file"]).replace("\\", "/").strip("/")
        label_text = _cell(row, columns["label"])
        if not file and not label_text:
            continue
        if file not in lookup:
            skipped.append(f"{member.shown} row {row_number}: {file!r} is not an image in the "
                           "zip; its label was not used")
            continue
        label = _parse_label(label_text, integer=True)
        if not isinstance(label, int):
            skipped.append(f"{member.shown} row {row_number}: label {label_text!r} is not a "
                           f"whole number (a class index); {file} has no label")
            continue
        labels[lookup[file]] = label
    return labels

