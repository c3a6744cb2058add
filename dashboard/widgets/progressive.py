"""Instant, then exact: a labelled IG (or IG2) preview while the exact result is computed, and
afterwards how far the preview was from it. Only the exact result is cached, downloaded and
reported. The callbacks take either preview (``fast_paths.Preview``, ``Ig2Preview``): both have
``result.attributions``, ``label`` and ``seconds``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from attribution_core.fast_paths import Preview, PreviewSummary
from attribution_core.methods.ig2_preview import Ig2Preview
from dashboard.widgets import figures, keys

AnyPreview = Preview | Ig2Preview

_BAR_LIMIT = 20


def preview_toggle() -> None:
    """The sidebar switch (one per session, for every page)."""
    st.toggle("Quick preview first", value=True, key=keys.PREVIEW_FIRST,
              help="Show a fast approximate map while the exact one is computed: IG on a "
                   "quarter of the steps, IG2 on a quarter of the references (both in bf16 "
                   "on hardware with bf16 units). The preview is never cached, downloaded or "
                   "reported.")


def preview_wanted() -> bool:
    return bool(st.session_state.get(keys.PREVIEW_FIRST, True))


def image_preview(slot: st.delta_generator.DeltaGenerator
                  ) -> Callable[[AnyPreview], None] | None:
    """A callback drawing the channel-summed preview map into ``slot`` (None: preview off)."""
    if not preview_wanted():
        return None

    def show(preview: AnyPreview) -> None:
        values = preview.result.attributions[0].detach().cpu().double()
        if values.dim() == 3:
            values = values.sum(0)
        array = values.numpy()
        limit = float(np.abs(array).max()) or 1.0
        figure = figures.heatmap_figure(array, limit, "signed", "RdBu", preview.label)
        _draw(slot, preview, figure)
    return show


def feature_preview(slot: st.delta_generator.DeltaGenerator,
                    names: Callable[[AnyPreview], Sequence[str]],
                    values: Callable[[AnyPreview], np.ndarray]
                    ) -> Callable[[AnyPreview], None] | None:
    """A callback drawing the largest preview attributions as bars (text tokens, features)."""
    if not preview_wanted():
        return None

    def show(preview: AnyPreview) -> None:
        scores = np.asarray(values(preview), dtype=np.float64).reshape(-1)
        labels = list(names(preview))[: scores.size]
        order = np.argsort(-np.abs(scores))[:_BAR_LIMIT][::-1]
        figure = go.Figure(go.Bar(x=scores[order], y=[labels[i] for i in order],
                                  orientation="h"))
        figure.update_layout(title={"text": preview.label}, height=80 + 18 * len(order),
                             margin={"l": 10, "r": 10, "t": 40, "b": 10})
        _draw(slot, preview, figure)
    return show


def _draw(slot: st.delta_generator.DeltaGenerator, preview: AnyPreview, figure: go.Figure
          ) -> None:
    """The preview's label (marked as such) and its figure, in the slot the result replaces
    (IG's and then IG2's preview may take turns in one slot: one chart key each)."""
    with slot.container():
        st.caption(f":orange[PREVIEW] {preview.label}, {preview.seconds:.2f} s")
        key = keys.PREVIEW_CHART if isinstance(preview, Preview) else keys.PREVIEW_CHART_IG2
        st.plotly_chart(figure, key=key, width="stretch")


def show_summary(summary: PreviewSummary | None) -> None:
    """One line under the results: what the preview was and how far it was from the exact map."""
    if summary is None:
        return
    line = f"{summary.label.split(' (')[0]} was shown after {summary.seconds:.2f} s."
    if summary.deviation is not None:
        d = summary.deviation
        line += (f" Against the exact map: relative L2 {100 * d.relative_l2:.3g} %, rank "
                 f"correlation {d.rank_correlation:.4f}, top-{d.k} overlap "
                 f"{round(d.top_k_overlap * d.k)}/{d.k}.")
    st.caption(line)
