"""The attribution maps of a run on one shared colour scale (IG and IG2 side by side)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from attribution_core.modalities import image as image_io
from dashboard.image import keys, logic
from dashboard.widgets import figures


@dataclass(frozen=True)
class ViewOptions:
    """Display-only choices: changing them never recomputes anything."""

    view: image_io.View
    colour_map: str
    clip: float
    opacity: float
    top_k: int


def method_maps(run: logic.ExplanationRun) -> dict[str, np.ndarray]:
    """Per method, the attribution summed over channels ([H, W])."""
    maps: dict[str, np.ndarray] = {}
    if run.ig is not None:
        maps["IG"] = image_io.channel_sum(run.ig.attributions)
    if run.ig2 is not None:
        maps["IG2"] = image_io.channel_sum(run.ig2.attributions)
    return maps


def render_maps(maps: dict[str, np.ndarray], picture: np.ndarray, options: ViewOptions
                ) -> float:
    """Draw every map alone and over the picture; return the one colour limit they share."""
    shown = {name: image_io.apply_view(values, options.view) for name, values in maps.items()}
    limit = image_io.shared_limit(list(shown.values()), options.clip)
    if len(shown) > 1:
        st.caption(f"IG and IG2 share one colour scale (limit ±{limit:.3g}) so their strength "
                   "can be compared directly.")
    # One method: map and overlay side by side. Two: a row of maps, then a row of overlays, so
    # IG and IG2 sit next to each other in both views.
    heatmaps = {name: figures.heatmap_figure(values, limit, options.view, options.colour_map,
                                             f"{name}: attribution (channels summed)")
                for name, values in shown.items()}
    overlays = {name: figures.overlay_figure(picture, values, limit, options.view,
                                             options.colour_map, options.opacity,
                                             f"{name}: over the model input")
                for name, values in shown.items()}
    if len(shown) == 1:
        (name,) = shown
        rows = [[(keys.heatmap(name), heatmaps[name]), (keys.overlay(name), overlays[name])]]
    else:
        rows = [[(keys.heatmap(n), heatmaps[n]) for n in shown],
                [(keys.overlay(n), overlays[n]) for n in shown]]
    for row in rows:
        for column, (key, figure) in zip(st.columns(len(row)), row, strict=True):
            with column:
                st.plotly_chart(figure, key=key, width="content")
    return limit
