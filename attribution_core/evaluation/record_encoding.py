"""JSON encoding of evaluation values: floats that may be NaN or infinite, typed arrays and
the pictures, tokens or raw rows a case displays, each with its exact inverse."""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

# Larger pictures are shrunk before they go into the JSON: the report stays small, and the
# picture is only there to show which input a row is about (the maps keep full resolution).
MAX_DISPLAY_SIDE = 256


class ReportFormatError(ValueError):
    """A report file that this version cannot read; the message says what is wrong with it."""


def require(record: Any, keys: tuple[str, ...], what: str) -> None:
    if not isinstance(record, Mapping):
        raise ReportFormatError(
            f"Expected {what} to be a JSON object, found {type(record).__name__}.")
    missing = [key for key in keys if key not in record]
    if missing:
        raise ReportFormatError(
            f"The report is incomplete: {what} lacks {', '.join(missing)}. It may be truncated "
            "or written by another program; write it again with write_report.")


def encode_float(value: float | None) -> float | str | None:
    if value is None:
        return None
    value = float(value)
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def decode_float(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, str):
        if value in ("inf", "-inf"):
            return float(value)
        raise ReportFormatError(f"Expected a number in the report, found the text {value!r}.")
    return float(value)


def clean_nested(values: Any) -> Any:
    """tolist() output with NaN/inf replaced (JSON has no spelling for them)."""
    if isinstance(values, list):
        return [clean_nested(v) for v in values]
    if isinstance(values, float):
        return encode_float(values)
    return values


def restore_nested(values: Any) -> Any:
    if isinstance(values, list):
        return [restore_nested(v) for v in values]
    if values is None or isinstance(values, str):
        return decode_float(values)
    return values


def encode_array(array: np.ndarray) -> dict[str, Any]:
    # dtype and shape travel with the values: a float32 map must come back float32, and an
    # empty or [0, n] array cannot be told apart from its nested lists alone.
    array = np.asarray(array)
    return {"dtype": str(array.dtype), "shape": list(array.shape),
            "values": clean_nested(array.tolist())}


def decode_array(encoded: Mapping[str, Any]) -> np.ndarray:
    require(encoded, ("dtype", "shape", "values"), "an array")
    values = restore_nested(encoded["values"])
    return np.array(values, dtype=np.dtype(encoded["dtype"])).reshape(encoded["shape"])


def image_data_url(pixels: np.ndarray) -> str:
    """An H x W (x 1/3/4) uint8 array as a PNG data URL (lossless, so it decodes back exactly)."""
    from PIL import Image

    array = np.asarray(pixels)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    image = Image.fromarray(np.ascontiguousarray(array))
    if max(image.size) > MAX_DISPLAY_SIDE:
        image.thumbnail((MAX_DISPLAY_SIDE, MAX_DISPLAY_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_image_data_url(url: str) -> np.ndarray:
    from PIL import Image

    prefix = "data:image/png;base64,"
    if not url.startswith(prefix):
        raise ReportFormatError("A case picture in the report is not a PNG data URL.")
    with Image.open(io.BytesIO(base64.b64decode(url[len(prefix):])), formats=["PNG"]) as image:
        return np.asarray(image).copy()


def _is_picture(value: Any) -> bool:
    return (isinstance(value, np.ndarray) and value.dtype == np.uint8
            and (value.ndim == 2 or (value.ndim == 3 and value.shape[2] in (1, 3, 4))))


def encode_display(display: Any) -> dict[str, Any] | None:
    """What a figure shows, tagged with its kind so it decodes to the same Python type.

    Anything that is not a picture, an array, a sequence, a mapping or a plain scalar is left
    out (None): a report must never need unpickling to be read.
    """
    if display is None:
        return None
    if hasattr(display, "detach") and hasattr(display, "numpy"):  # a torch tensor
        display = display.detach().cpu().numpy()
    if _is_picture(display):
        shape = list(display.shape)
        return {"kind": "image", "data_url": image_data_url(display), "shape": shape}
    if isinstance(display, np.ndarray):
        return {"kind": "array", **encode_array(display)}
    if isinstance(display, tuple | list):
        items = [_plain(v) for v in display]
        if any(v is _UNSUPPORTED for v in items):
            return None
        return {"kind": "tuple" if isinstance(display, tuple) else "list", "values": items}
    if isinstance(display, Mapping):
        if not all(isinstance(k, str) for k in display):
            return None
        items_map = {k: _plain(v) for k, v in display.items()}
        if any(v is _UNSUPPORTED for v in items_map.values()):
            return None
        return {"kind": "mapping", "values": items_map}
    plain = _plain(display)
    return None if plain is _UNSUPPORTED else {"kind": "scalar", "value": plain}


_UNSUPPORTED = object()


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return {"float": encode_float(value)}  # tagged so 1.0 does not come back as int 1
    return _UNSUPPORTED


def _restore_plain(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"float"}:
        return decode_float(value["float"])
    return value


def decode_display(encoded: Mapping[str, Any] | None) -> Any:
    if encoded is None:
        return None
    kind = encoded.get("kind")
    if kind == "image":
        pixels = decode_image_data_url(encoded["data_url"])
        shape = tuple(encoded.get("shape", pixels.shape))
        # an H x W x 1 picture was stored as a grey PNG; restore its trailing axis
        return pixels.reshape(shape) if pixels.size == math.prod(shape) else pixels
    if kind == "array":
        return decode_array(encoded)
    if kind in ("tuple", "list"):
        items = [_restore_plain(v) for v in encoded["values"]]
        return tuple(items) if kind == "tuple" else items
    if kind == "mapping":
        return {k: _restore_plain(v) for k, v in encoded["values"].items()}
    if kind == "scalar":
        return _restore_plain(encoded["value"])
    raise ReportFormatError(f"Unknown display kind {kind!r} in the report.")


def json_or_none(value: Any) -> Any:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return None
    return value


