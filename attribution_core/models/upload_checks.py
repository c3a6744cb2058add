"""Checks of an uploaded model that read only what the file declares, before anything is built.

A safetensors file is a length, a JSON header (every tensor's dtype, shape and byte range) and
the bytes: every size a network built from it would have is in the header, so it is bounded
here before a single layer is allocated (a 172-byte file declaring ``[20000, 0]`` weights used
to build a 1.5 GB layer first and complain after). Names a model file carries (classes,
features) get the same bounds as the names a person types on the pages (:mod:`..limits`).

No Streamlit; every refusal is a one-line :class:`ModelLoadError`.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from attribution_core import limits
from attribution_core.models.spec import ModelLoadError

PICKLE_MAGIC = b"\x80"  # protocol 2+ pickles start with PROTO
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default format is a zip archive holding a pickle
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # Unicode category Cc
SAFETENSORS_DTYPES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
    "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as a safetensors header declares it (byte range relative to the data)."""

    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


def safetensors_header(data: bytes, what: str = "The upload") -> dict[str, TensorEntry]:
    """The tensors ``data`` declares, each checked against the bytes present and the limits.

    Linear in the header's size, which is bounded first (from the 8-byte length field)."""
    if data.startswith(ZIP_MAGIC) or data.startswith(PICKLE_MAGIC):
        kind = "a zip archive (torch.save's format)" if data.startswith(ZIP_MAGIC) else "a pickle"
        raise ModelLoadError(
            f"{what} is {kind}. Pickled checkpoints can run code when loaded, so they are "
            "refused; convert it with safetensors.torch.save_file(model.state_dict(), path).")
    if len(data) < 8:
        raise ModelLoadError(f"{what} is {len(data)} bytes: too short to be safetensors.")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > limits.MAX_SAFETENSORS_HEADER_BYTES:
        raise ModelLoadError(
            f"{what} declares a safetensors header of {header_len:,} bytes; at most "
            f"{limits.MAX_SAFETENSORS_HEADER_BYTES // 2**20} MB are read (room for "
            f"{limits.MAX_SAFETENSORS_TENSORS:,} tensors).")
    if header_len > len(data) - 8:
        raise ModelLoadError(f"Not a valid safetensors file: the header claims {header_len:,} "
                             f"bytes but the file has {len(data) - 8:,} after the length field "
                             "(truncated or not safetensors).")
    header = _json_object(data[8:8 + header_len], what)
    available = len(data) - 8 - header_len
    entries: dict[str, TensorEntry] = {}
    tensors = [(key, value) for key, value in header.items() if key != "__metadata__"]
    if len(tensors) > limits.MAX_SAFETENSORS_TENSORS:
        raise ModelLoadError(f"{what} declares {len(tensors):,} tensors; at most "
                             f"{limits.MAX_SAFETENSORS_TENSORS:,} are accepted.")
    for key, value in tensors:
        entries[key] = _entry(key, value, available, what)
    return entries


def _json_object(raw: bytes, what: str) -> dict[str, object]:
    try:
        header = json.loads(raw)
    except RecursionError as error:  # "[[[[..." : the decoder's own depth limit
        raise ModelLoadError(f"Not a valid safetensors file: {what.lower()}'s header is nested "
                             "far deeper than a header of tensors can be.") from error
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"Not a valid safetensors file: its header is not JSON "
                             f"({type(error).__name__}).") from error
    if not isinstance(header, dict):
        raise ModelLoadError(f"Not a valid safetensors file: its header is a JSON "
                             f"{type(header).__name__}, not an object naming tensors.")
    return header


def _entry(key: str, value: object, available: int, what: str) -> TensorEntry:
    shown = _short(key)
    if not isinstance(value, dict):
        raise ModelLoadError(f"Not a valid safetensors file: the entry {shown!r} is a "
                             f"{type(value).__name__}, not a tensor description.")
    dtype, shape, offsets = value.get("dtype"), value.get("shape"), value.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in SAFETENSORS_DTYPES:
        raise ModelLoadError(f"Not a valid safetensors file: tensor {shown!r} has the unknown "
                             f"dtype {_short(str(dtype))!r}.")
    if not (isinstance(shape, list) and len(shape) <= limits.MAX_TENSOR_RANK
            and all(type(d) is int and d >= 0 for d in shape)):
        raise ModelLoadError(f"Not a valid safetensors file: tensor {shown!r} has no valid "
                             f"shape (a list of at most {limits.MAX_TENSOR_RANK} sizes >= 0).")
    if 0 in shape:
        raise ModelLoadError(
            f"{what}: tensor {shown!r} has shape {_shape(shape)}, with a zero-size "
            "dimension; no layer of a model here has one (a layer built from it would be "
            "sized by its other dimension alone).")
    if not (isinstance(offsets, list) and len(offsets) == 2
            and all(type(o) is int for o in offsets) and 0 <= offsets[0] <= offsets[1]):
        raise ModelLoadError(f"Not a valid safetensors file: tensor {shown!r} has no valid "
                             "byte range.")
    size = math.prod(shape) * SAFETENSORS_DTYPES[dtype]
    if offsets[1] > available:
        raise ModelLoadError(f"The safetensors file is truncated: its tensors need "
                             f"{offsets[1]:,} bytes of data but only {available:,} are "
                             "present.")
    if offsets[1] - offsets[0] != size:
        raise ModelLoadError(f"Not a valid safetensors file: tensor {shown!r} declares shape "
                             f"{_shape(shape)} ({size:,} bytes) but a byte range of "
                             f"{offsets[1] - offsets[0]:,}.")
    return TensorEntry(dtype, tuple(shape), offsets[0], offsets[1])


def check_shapes(entries: Mapping[str, TensorEntry], expected: Mapping[str, tuple[int, ...]],
                 model: str, source: str) -> None:
    """The file's tensors are exactly ``expected`` (names and shapes), said in one line."""
    missing = sorted(set(expected) - set(entries))
    unexpected = sorted(set(entries) - set(expected))
    shapes = [f"{_short(key)}: file {entries[key].shape} vs model "
              f"{tuple(expected[key])}" for key in sorted(set(entries) & set(expected))
              if entries[key].shape != tuple(expected[key])]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_few(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches ({len(shapes)}): {_few(shapes)}")
    if problems:
        raise ModelLoadError(f"The weights in {source} do not match {model}: "
                             + "; ".join(problems) + ".")


def mlp_sizes(entries: Mapping[str, TensorEntry], what: str = "The safetensors file", *,
              max_inputs: int = limits.MAX_MODEL_FEATURES) -> list[int]:
    """The widths of an ``nn.Sequential`` MLP saved as ``layers`` (Linear, activation, Linear,
    ...), read and cross-checked from the header: each layer takes what the one before gives,
    and every weight and bias is present, so the network built is the one the bytes fill.
    ``max_inputs``: the first layer's widest input (features, or an encoded row's slots)."""
    weights = {int(key.split(".")[1]): entry for key, entry in entries.items()
               if key.startswith("layers.") and key.endswith(".weight")
               and key.split(".")[1].isdigit() and len(entry.shape) == 2}
    if not weights:
        raise ModelLoadError(f"{what} has no layers.N.weight matrices: save an nn.Sequential "
                             "stored as the attribute 'layers'.")
    indices = sorted(weights)
    if indices != list(range(0, 2 * len(indices), 2)):
        positions = _few([str(i) for i in indices])
        raise ModelLoadError(f"{what} has Linear layers at positions {positions}; this MLP has "
                             "them at 0, 2, 4, ... with an activation between.")
    sizes = [weights[0].shape[1]]
    for index in indices:
        width_out, width_in = weights[index].shape
        if width_in != sizes[-1]:
            raise ModelLoadError(f"{what}: layers.{index}.weight takes {width_in:,} inputs but "
                                 f"the layer before gives {sizes[-1]:,}.")
        bias = entries.get(f"layers.{index}.bias")
        if bias is None or bias.shape != (width_out,):
            raise ModelLoadError(f"{what}: layers.{index}.bias is missing or not of shape "
                                 f"[{width_out}].")
        sizes.append(width_out)
    if sizes[0] > max_inputs:
        raise ModelLoadError(f"{what}: the MLP takes {sizes[0]:,} features; at most "
                             f"{max_inputs:,} are accepted.")
    if sizes[-1] > limits.MAX_MODEL_CLASSES:
        raise ModelLoadError(f"{what}: the MLP has {sizes[-1]:,} outputs; at most "
                             f"{limits.MAX_MODEL_CLASSES:,} are accepted.")
    return sizes


def check_class_count(count: int, source: str) -> None:
    """Refuse more class names than the pages list (before any of them is decoded)."""
    if count > limits.MAX_MODEL_CLASSES:
        raise ModelLoadError(f"{source} holds {count:,} class names; at most "
                             f"{limits.MAX_MODEL_CLASSES:,} are accepted.")


def check_class_names(names: Sequence[object], source: str) -> tuple[str, ...]:
    """Class names from a model or a file, bounded like the page's own lists (count first,
    before anything is decoded). Repeats are kept: pages pick classes by index, and real lists
    repeat names (ImageNet-1k has two "crane"s)."""
    check_class_count(len(names), source)
    return _checked(names, source, "class name")


def check_category_names(names: Sequence[object], source: str, limit: int) -> tuple[str, ...]:
    """Category names from a model or its config (select-box options, slot names): at most
    ``limit``, each bounded and printable like a class name (count first)."""
    if len(names) > limit:
        raise ModelLoadError(f"{source} lists {len(names):,} categories; at most {limit:,} "
                             "are accepted.")
    return _checked(names, source, "category")


def check_feature_names(names: Sequence[object], source: str) -> tuple[str, ...]:
    """Feature names from a model or its config: bounded, printable and distinct (each one
    names a CSV column)."""
    if len(names) > limits.MAX_MODEL_FEATURES:
        raise ModelLoadError(f"{source} names {len(names):,} features; at most "
                             f"{limits.MAX_MODEL_FEATURES:,} are accepted.")
    checked = _checked(names, source, "feature name")
    repeated = limits.repeated(checked)
    if repeated:
        shown = ", ".join(repr(_short(name)) for name in repeated[:5])
        more = f" and {len(repeated) - 5:,} more" if len(repeated) > 5 else ""
        raise ModelLoadError(f"{source} repeats the feature name(s) {shown}{more}; each "
                             "feature needs its own name.")
    return checked


def _checked(names: Iterable[object], source: str, kind: str) -> tuple[str, ...]:
    decoded = tuple((n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n)).strip()
                    for n in names)
    longest = max(decoded, key=len, default="")
    if len(longest) > limits.MAX_MODEL_NAME_CHARS:
        raise ModelLoadError(f"{source}: the {kind} {_short(longest)!r} is {len(longest):,} "
                             f"characters long; at most {limits.MAX_MODEL_NAME_CHARS} are "
                             "accepted.")
    total = sum(len(name) for name in decoded)
    if total > limits.MAX_MODEL_NAMES_TOTAL_CHARS:
        raise ModelLoadError(f"{source}: its {kind}s hold {total:,} characters together; at "
                             f"most {limits.MAX_MODEL_NAMES_TOTAL_CHARS:,} are accepted.")
    control = next((name for name in decoded if CONTROL.search(name)), None)
    if control is not None:
        raise ModelLoadError(f"{source}: the {kind} {_short(control)!r} holds a control "
                             "character (a line break or similar).")
    return decoded


def _shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _few(items: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(_short(item, 80) for item in items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")
