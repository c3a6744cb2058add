"""The Home page's first sight: a bundled digit explained by IG and IG2 side by side.

Computed through the shared result cache, so after the first visitor it appears at once; the
heatmaps share one colour scale, as on the image page.
"""

from __future__ import annotations

import numpy as np
import streamlit as st
import torch

from attribution_core.modalities import image as image_io
from attribution_core.models.inputs import display_array
from dashboard.home import keys
from dashboard.image import logic
from dashboard.image.views import method_maps
from dashboard.widgets import catalog, figures, resources

EXAMPLE_MODEL = "digits_cnn"
EXAMPLE_STEPS = 64


def _example_run() -> tuple[logic.ExplanationRun, np.ndarray, str] | None:
    spec = catalog.get_spec(EXAMPLE_MODEL)
    if not catalog.status_of(spec).ready or spec.samples is None:
        return None
    sample = next(iter(spec.samples()))
    loaded = resources.loaded_model(EXAMPLE_MODEL)
    inputs = logic.model_input(loaded, sample.value)
    prep = logic.preprocessing_for(loaded, inputs)
    with torch.no_grad():
        probabilities = torch.softmax(loaded.forward(inputs), dim=1)[0]
    target = int(probabilities.argmax())
    settings = logic.ImageSettings(method="both", target=target, n_steps=EXAMPLE_STEPS,
                                   convergence_curve=False, ig2_step_size=loaded.spec.ig2_step_size)
    baseline = logic.build_baseline("black", loaded, inputs, prep)
    run = logic.run_explanation(loaded, inputs, baseline, settings,
                                cache=resources.shared_result_cache(),
                                input_probabilities=probabilities)
    label = logic.class_label(loaded.spec.class_names, target)
    return run, display_array(loaded, inputs[0], prep), label


def show_example() -> None:
    """The digit, its IG map and its IG2 map on one colour scale, with one line on reading."""
    try:
        found = _example_run()
    except Exception:  # the example is a courtesy: the rest of Home must still show
        found = None
    if found is None:
        st.info("The bundled example model is not available on this server.")
        return
    run, picture, label = found
    maps = method_maps(run)
    limit = image_io.shared_limit(list(maps.values()), 99.5)
    columns = st.columns(1 + len(maps))
    columns[0].image(picture, caption=f"Input: read as {label}", width="stretch")
    for column, (name, values) in zip(columns[1:], maps.items(), strict=True):
        column.plotly_chart(figures.heatmap_figure(values, limit, "signed", "RdBu", name),
                            key=keys.example(name), width="stretch")
    st.caption(f"Red pixels raised the score of class {label}, blue ones lowered it. IG measures "
               "against a black image; IG2 against counterfactuals walked towards other "
               "digits. Same colour scale for both: compare where they put the evidence.")
