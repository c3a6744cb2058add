"""A zip's size as declared by its end record, read before ``zipfile`` lists every member.

``zipfile.ZipFile`` parses the whole central directory into Python objects as it opens: 200,000
empty members (a few MB) took 17 s and 163 MB. The end-of-central-directory record (the last
22 bytes, or its zip64 twin) states the entry count and the directory's size, so both can be
refused first. zipfile reads as many bytes as the record's size says, whatever the count
claims, so the size is the bound that cannot be talked around.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from attribution_core.evaluation.types import EvaluationInputError
from attribution_core.limits import MAX_ZIP_DIRECTORY_BYTES, MAX_ZIP_ENTRIES, MAX_ZIP_NAME_CHARS

_END = struct.Struct("<4s4H2LH")  # signature, disks, entries here / total, size, offset, comment
_END_SIGNATURE = b"PK\x05\x06"
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_LOCATOR_SIGNATURE = b"PK\x06\x07"
_ZIP64_END = struct.Struct("<4sQ2H2L4Q")
_ZIP64_END_SIGNATURE = b"PK\x06\x06"
_MAX_COMMENT = 0xFFFF


@dataclass(frozen=True)
class DeclaredDirectory:
    entries: int
    size_bytes: int


def declared_directory(data: bytes) -> DeclaredDirectory | None:
    """The entry count and directory size the archive declares (None: no end record found,
    which ``zipfile`` will then refuse with its own error)."""
    at = data.rfind(_END_SIGNATURE, max(0, len(data) - _END.size - _MAX_COMMENT))
    if at < 0 or at + _END.size > len(data):
        return None
    fields = _END.unpack_from(data, at)
    entries, size = fields[4], fields[5]
    if entries == 0xFFFF or size == 0xFFFFFFFF or fields[6] == 0xFFFFFFFF:
        entries, size = _zip64(data, at, entries, size)
    return DeclaredDirectory(entries, size)


def _zip64(data: bytes, end_at: int, entries: int, size: int) -> tuple[int, int]:
    locator_at = end_at - _ZIP64_LOCATOR.size
    if locator_at < 0 or data[locator_at:locator_at + 4] != _ZIP64_LOCATOR_SIGNATURE:
        return entries, size
    record_at = _ZIP64_LOCATOR.unpack_from(data, locator_at)[2]
    if record_at + _ZIP64_END.size > len(data) or \
            data[record_at:record_at + 4] != _ZIP64_END_SIGNATURE:
        return entries, size
    fields = _ZIP64_END.unpack_from(data, record_at)
    return fields[7], fields[8]


def check_declared_directory(data: bytes) -> None:
    """Refuse an archive whose directory is too large to list (before ``zipfile`` lists it)."""
    declared = declared_directory(data)
    if declared is None:
        return
    if declared.entries > MAX_ZIP_ENTRIES:
        raise EvaluationInputError(
            f"The zip lists {declared.entries:,} entries; at most {MAX_ZIP_ENTRIES:,} files and "
            "folders are accepted. Upload fewer cases at once.")
    if declared.size_bytes > MAX_ZIP_DIRECTORY_BYTES:
        raise EvaluationInputError(
            f"The zip's table of contents is {declared.size_bytes / 2**20:,.1f} MB; at most "
            f"{MAX_ZIP_DIRECTORY_BYTES / 2**20:,.0f} MB is read (fewer files or shorter "
            "names).")


def check_member_names(names: list[str]) -> None:
    """Refuse over-long member paths (deep folder chains) and too many members, by count."""
    if len(names) > MAX_ZIP_ENTRIES:
        raise EvaluationInputError(
            f"The zip lists {len(names):,} entries; at most {MAX_ZIP_ENTRIES:,} files and "
            "folders are accepted. Upload fewer cases at once.")
    longest = max(names, key=len, default="")
    if len(longest) > MAX_ZIP_NAME_CHARS:
        raise EvaluationInputError(
            f"The zip holds a path of {len(longest):,} characters ({longest[:40]}…); at most "
            f"{MAX_ZIP_NAME_CHARS} are accepted. Zip the images from a shallower folder.")
