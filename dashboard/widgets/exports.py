"""Downloads: heatmap PNG (numpy + PIL, no kaleido), attributions as .npy / CSV, a JSON record."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import plotly.colors as plotly_colors
import torch
from PIL import Image

from attribution_core.modalities.image import View
from dashboard.widgets.figures import colour_range, scale_for

MIN_PNG_SIDE = 256
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _scale_anchors(scale_name: str) -> tuple[np.ndarray, np.ndarray]:
    positions: list[float] = []
    colours: list[tuple[float, float, float]] = []
    for position, colour in plotly_colors.get_colorscale(scale_name):
        positions.append(float(position))
        if colour.startswith("#"):
            rgb = plotly_colors.hex_to_rgb(colour)
        else:
            rgb = plotly_colors.unlabel_rgb(colour)
        colours.append(tuple(float(c) for c in rgb))  # type: ignore[arg-type]
    return np.asarray(positions), np.asarray(colours)


def colourise(values: np.ndarray, limit: float, view: View, colour_map: str) -> np.ndarray:
    """Map values to RGB with the same scale and range as the on-screen heatmap."""
    low, high = colour_range(limit, view)
    unit = np.clip((np.asarray(values, dtype=np.float64) - low) / max(high - low, 1e-300), 0, 1)
    positions, colours = _scale_anchors(scale_for(colour_map, view))
    rgb = np.stack([np.interp(unit, positions, colours[:, c]) for c in range(3)], axis=-1)
    return rgb.round().astype(np.uint8)


def heatmap_png(values: np.ndarray, limit: float, view: View, colour_map: str,
                picture: np.ndarray | None = None, opacity: float = 1.0) -> bytes:
    """A PNG of the heatmap (over ``picture`` when given), enlarged with crisp pixel edges."""
    colours = colourise(values, limit, view, colour_map).astype(np.float64)
    if picture is not None:
        colours = opacity * colours + (1.0 - opacity) * picture.astype(np.float64)
    image = Image.fromarray(colours.round().clip(0, 255).astype(np.uint8), mode="RGB")
    factor = max(1, int(np.ceil(MIN_PNG_SIDE / max(1, min(image.size)))))
    if factor > 1:
        image = image.resize((image.width * factor, image.height * factor),
                             Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def attributions_npy(attributions: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, attributions.detach().cpu().numpy(), allow_pickle=False)
    return buffer.getvalue()


def attributions_csv(attributions: torch.Tensor) -> str:
    """Long format, one line per channel and pixel: channel,row,column,attribution."""
    values = attributions.detach().cpu().double().numpy()
    if values.ndim == 4:
        values = values[0]
    channels, rows, columns = values.shape
    c, r, k = np.meshgrid(np.arange(channels), np.arange(rows), np.arange(columns),
                          indexing="ij")
    table = np.column_stack([c.ravel(), r.ravel(), k.ravel()])
    lines = ["channel,row,column,attribution"]
    lines.extend(f"{a},{b},{d},{v:.9g}" for (a, b, d), v in zip(table, values.ravel(),
                                                               strict=True))
    return "\n".join(lines) + "\n"


def spreadsheet_text(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula (it starts with = + - @, a tab or a
    carriage return: OWASP's list for CSV injection) gets a leading single quote, so it is shown
    as the text it is. Numbers, and text that is a plain number ("-0.25"), are left alone."""
    if not isinstance(value, str) or not value.startswith(FORMULA_PREFIXES):
        return value
    try:
        float(value)
    except ValueError:
        return "'" + value
    return value


def frame_csv(frame: pd.DataFrame) -> str:
    """``frame`` as CSV text with every text cell and column name made spreadsheet-safe."""
    safe = frame.rename(columns=spreadsheet_text)
    for column in safe.columns:
        if not pd.api.types.is_numeric_dtype(safe[column]):
            safe[column] = safe[column].map(spreadsheet_text)
    return safe.to_csv(index=False)


def run_record(parameters: Mapping[str, Any]) -> str:
    """The JSON record of a run (parameters, weights hash, completeness figures)."""
    return json.dumps(parameters, indent=2, sort_keys=True, default=_plain)


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    return str(value)
