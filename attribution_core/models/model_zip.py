"""A model folder uploaded as a zip, checked before anything is written, then extracted.

A zip is a list of names and sizes that its author chose. Before one byte is inflated, this
refuses what could hurt a shared server or smuggle code in:

- too many entries or too large a directory (read from the end record first,
  :mod:`attribution_core.evaluation.zip_directory`, so ``zipfile`` never lists 200,000 names);
- a path that leaves the folder (``..``, an absolute path, a drive letter), a symbolic link,
  an encrypted member, a name that appears twice, a folder inside the model folder;
- pickles and code (``.bin``, ``.pt``, ``.pkl``, ``.py``, ...): weights must be safetensors;
- a declared size over the limits (the total over the model-upload limit, a JSON or tokenizer
  file over its own); each member is then read through a bounded read, so a header that lies
  about its size is caught one byte past what it claimed.

Only known Hugging Face file names are extracted (config, safetensors weights, tokenizer files);
anything else (a README, ``generation_config.json``) is left in the zip and listed. The
identity of the upload is a sha256 over every file's name and content, so the same folder
zipped twice is the same model, and any change to any file is another one.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from attribution_core.evaluation.zip_directory import declared_directory
from attribution_core.limits import (
    MAX_MODEL_JSON_BYTES,
    MAX_MODEL_TOKENIZER_BYTES,
    MAX_MODEL_ZIP_ENTRIES,
    MAX_ZIP_DIRECTORY_BYTES,
    MAX_ZIP_NAME_CHARS,
)
from attribution_core.models.spec import ModelLoadError
from attribution_core.models.upload_checks import TensorEntry, safetensors_header
from attribution_core.models.uploads import model_upload_limit_bytes

WEIGHTS = re.compile(r"^model(-\d{5}-of-\d{5})?\.safetensors$")
JSON_FILES = frozenset({"config.json", "tokenizer_config.json", "special_tokens_map.json",
                        "added_tokens.json", "tokenizer.json", "vocab.json",
                        "model.safetensors.index.json"})
TOKENIZER_FILES = frozenset({"vocab.txt", "merges.txt", "spiece.model",
                             "sentencepiece.bpe.model", "tokenizer.model", "vocab.json",
                             "tokenizer.json"})
# Never extracted: pickles (loading them can run code), code, and weights in other formats.
REFUSED_SUFFIXES = {
    ".bin": "a PyTorch pickle", ".pt": "a PyTorch pickle", ".pth": "a PyTorch pickle",
    ".pkl": "a pickle", ".pickle": "a pickle", ".ckpt": "a pickled checkpoint",
    ".joblib": "a pickle", ".npy": "a NumPy file (may hold a pickle)",
    ".npz": "a NumPy archive (may hold pickles)", ".py": "Python code", ".pyc": "Python code",
    ".so": "native code", ".h5": "TensorFlow weights", ".msgpack": "Flax weights",
}
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ExtractedFolder:
    """What was written, what was left in the zip, and the upload's identity."""

    files: tuple[str, ...]
    ignored: tuple[str, ...]
    sha256: str
    config: dict[str, Any]
    tokenizer_config: dict[str, Any] | None
    weights: dict[str, TensorEntry]  # every tensor the safetensors headers declare


@dataclass(frozen=True)
class _Member:
    info: zipfile.ZipInfo
    name: str  # the file name inside the model folder
    keep: bool


def extract_model_zip(data: bytes, destination: Path, file_name: str = "the zip"
                      ) -> ExtractedFolder:
    """Check the zip ``data`` and write its model files into ``destination`` (an empty,
    private folder the caller owns). Raises :class:`ModelLoadError` with the reason."""
    limit = model_upload_limit_bytes()
    if len(data) > limit:
        raise ModelLoadError(f"{file_name} is {len(data) / 2**20:.0f} MB; this server accepts "
                             f"model uploads up to {limit / 2**20:.0f} MB.")
    archive = _open(data, file_name)
    members = _members(archive, file_name)
    _check_sizes(members, limit, file_name)
    names = {m.name for m in members}
    if "config.json" not in names:
        raise ModelLoadError(f"{file_name} has no config.json: zip the folder that "
                             "save_pretrained() wrote (config.json, model.safetensors and the "
                             "tokenizer files).")
    if not names & TOKENIZER_FILES:
        raise ModelLoadError(f"{file_name} has no tokenizer (tokenizer.json, vocab.txt, ...): "
                             "save the tokenizer with save_pretrained() into the same folder.")
    if not any(WEIGHTS.match(name) for name in names):
        raise ModelLoadError(f"{file_name} has no model.safetensors: save the model with "
                             "save_pretrained() (safetensors is its default format).")
    hasher = hashlib.sha256()
    written: list[str] = []
    parsed: dict[str, Any] = {}
    try:
        for member in sorted(members, key=lambda m: m.name):
            content = _read(archive, member, file_name)
            hasher.update(member.name.encode() + b"\0" + hashlib.sha256(content).digest())
            if not member.keep:
                continue
            _check_content(member.name, content, parsed)
            (destination / member.name).write_bytes(content)
            written.append(member.name)
    except BaseException:  # a later member was refused: leave no half-written folder
        for name in written:
            (destination / name).unlink(missing_ok=True)
        raise
    return ExtractedFolder(tuple(written), tuple(m.name for m in members if not m.keep),
                           hasher.hexdigest(), parsed["config.json"],
                           parsed.get("tokenizer_config.json"), parsed.get("weights", {}))


def _open(data: bytes, file_name: str) -> zipfile.ZipFile:
    declared = declared_directory(data)
    if declared is not None and declared.entries > MAX_MODEL_ZIP_ENTRIES:
        raise ModelLoadError(f"{file_name} lists {declared.entries:,} entries; a model folder "
                             f"may hold at most {MAX_MODEL_ZIP_ENTRIES} files and folders.")
    if declared is not None and declared.size_bytes > MAX_ZIP_DIRECTORY_BYTES:
        raise ModelLoadError(f"{file_name}'s table of contents is "
                             f"{declared.size_bytes / 2**20:,.1f} MB; at most "
                             f"{MAX_ZIP_DIRECTORY_BYTES / 2**20:,.0f} MB is read.")
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as error:
        raise ModelLoadError(f"{file_name} is not a zip archive we can read: compress the "
                             "model folder to .zip.") from error


def _members(archive: zipfile.ZipFile, file_name: str) -> list[_Member]:
    """Every file of the archive as a name inside the model folder; refuses what is unsafe."""
    infos = archive.infolist()
    if len(infos) > MAX_MODEL_ZIP_ENTRIES:
        raise ModelLoadError(f"{file_name} holds {len(infos):,} entries; a model folder may "
                             f"hold at most {MAX_MODEL_ZIP_ENTRIES} files and folders.")
    paths: list[tuple[zipfile.ZipInfo, tuple[str, ...]]] = []
    for info in infos:
        raw = info.filename
        if len(raw) > MAX_ZIP_NAME_CHARS:
            raise ModelLoadError(f"{file_name} holds a path of {len(raw):,} characters; at most "
                                 f"{MAX_ZIP_NAME_CHARS} are accepted.")
        parts = tuple(p for p in raw.replace("\\", "/").split("/") if p not in ("", "."))
        if raw.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise ModelLoadError(f"{file_name} holds the path {raw[:80]!r}, which points "
                                 "outside the folder; the zip was not read.")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ModelLoadError(f"{file_name} holds a symbolic link ({raw[:80]}); links are "
                                 "not accepted in a model folder.")
        if info.is_dir() or not parts or parts[0] == "__MACOSX" or \
                any(p.startswith(".") for p in parts):
            continue
        if info.flag_bits & 0x1:
            raise ModelLoadError(f"{file_name}: {raw[:80]} is encrypted; zip the folder "
                                 "without a password.")
        paths.append((info, parts))
    if not paths:
        raise ModelLoadError(f"{file_name} holds no files.")
    # One enclosing folder (zipping the folder itself) is fine; anything deeper is not.
    top = {parts[0] for _, parts in paths}
    strip = 1 if len(top) == 1 and all(len(parts) > 1 for _, parts in paths) else 0
    members: list[_Member] = []
    seen: set[str] = set()
    for info, parts in paths:
        inside = parts[strip:]
        if len(inside) > 1:
            raise ModelLoadError(
                f"{file_name} holds a folder inside the model folder "
                f"({'/'.join(inside[:-1])}/); zip the one folder that holds config.json and "
                "the weights, with no sub-folders.")
        name = inside[0]
        suffix = PurePosixPath(name).suffix.lower()
        if suffix in REFUSED_SUFFIXES:
            raise ModelLoadError(
                f"{file_name} holds {name}, {REFUSED_SUFFIXES[suffix]}. Loading pickles or "
                "code can run anything on the server, so only safetensors weights are "
                "accepted: save the model with save_pretrained(..., safe_serialization=True) "
                "and leave other files out.")
        if name in seen:
            raise ModelLoadError(f"{file_name} holds {name} twice.")
        seen.add(name)
        keep = bool(WEIGHTS.match(name)) or name in JSON_FILES or name in TOKENIZER_FILES
        members.append(_Member(info, name, keep))
    return members


def _size_limit(name: str, total: int) -> int:
    if WEIGHTS.match(name):
        return total
    if name in TOKENIZER_FILES:
        return MAX_MODEL_TOKENIZER_BYTES
    if name in JSON_FILES:
        return MAX_MODEL_JSON_BYTES
    return MAX_MODEL_TOKENIZER_BYTES  # an ignored file is still read, to be hashed


def _check_sizes(members: list[_Member], total: int, file_name: str) -> None:
    declared = sum(m.info.file_size for m in members)
    if declared > total:
        raise ModelLoadError(f"{file_name} unpacks to {declared / 2**20:,.0f} MB; this server "
                             f"accepts model folders up to {total / 2**20:,.0f} MB.")
    for member in members:
        limit = _size_limit(member.name, total)
        if member.info.file_size > limit:
            raise ModelLoadError(f"{file_name}: {member.name} unpacks to "
                                 f"{member.info.file_size / 2**20:,.1f} MB; at most "
                                 f"{limit / 2**20:,.0f} MB is accepted for it.")


def _bounded(handle: IO[bytes], limit: int, name: str) -> bytes:
    """At most ``limit`` bytes; one more means the header lied about the size."""
    chunks: list[bytes] = []
    left = limit + 1
    while left > 0:
        chunk = handle.read(min(_CHUNK, left))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    content = b"".join(chunks)
    if len(content) > limit:
        raise ModelLoadError(f"{name} inflates to more than its declared size; the zip looks "
                             "malformed or hostile and was not read.")
    return content


def _read(archive: zipfile.ZipFile, member: _Member, file_name: str) -> bytes:
    try:
        with archive.open(member.info) as handle:
            return _bounded(handle, member.info.file_size, member.name)
    except (NotImplementedError, zipfile.BadZipFile, zlib.error, EOFError, OSError,
            RuntimeError) as error:
        raise ModelLoadError(f"{file_name}: {member.name} is damaged inside the zip or packed "
                             "with a compression we cannot read; re-create the zip with "
                             "standard compression.") from error


def _check_content(name: str, content: bytes, parsed: dict[str, Any]) -> None:
    """Weights are safetensors (no pickle), JSON files are JSON objects."""
    if WEIGHTS.match(name):
        try:
            parsed.setdefault("weights", {}).update(safetensors_header(content))
        except ModelLoadError as error:
            raise ModelLoadError(f"{name}: {error}") from error
        return
    if name.endswith(".json"):
        try:
            value = json.loads(content.decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ModelLoadError(f"{name} is not valid JSON ({error}).") from error
        if not isinstance(value, dict):
            raise ModelLoadError(f"{name} must hold a JSON object.")
        parsed[name] = value
