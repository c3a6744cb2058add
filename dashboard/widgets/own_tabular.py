""""Your model" on the tabular page: an ONNX file or a safetensors MLP with a JSON config, and a
reference CSV for the feature names, the baselines and IG2's references.

Like the image page's own models, the result is this session's alone
(:mod:`dashboard.widgets.session_models`); files are read when **Load** is pressed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from attribution_core.limits import MAX_MODEL_CLASSES, MAX_MODEL_FEATURES, MODEL_CHECK_SECONDS
from attribution_core.modalities import tabular as tab_io
from attribution_core.models import sandbox
from attribution_core.models.onnx_models import (
    MAX_CONFIG_BYTES,
    onnx_support_problem,
    parse_mlp_config,
    tabular_upload_spec,
)
from attribution_core.models.spec import LoadedModel, ModelLoadError, ModelSpec
from attribution_core.models.tabular_uploads import encoded_upload_spec
from attribution_core.models.uploads import check_model_upload_size
from dashboard.widgets import keys, resources, session_models
from dashboard.widgets.errors import show_unexpected
from dashboard.widgets.own_models import SIDEBAR, YOURS, show_evicted, upload_limit_mb
from dashboard.widgets.upload_guard import upload_box

ONNX, MLP = "ONNX (.onnx)", "safetensors MLP + JSON config"
LABEL_COLUMNS = ("label", "target", "class", "y")


def model_source() -> str:
    return str(st.radio("Model source", [SIDEBAR, YOURS], horizontal=True,
                        key=keys.MODEL_SOURCE["tabular"],
                        help="Your model: an ONNX file (e.g. scikit-learn via skl2onnx, "
                             "pipelines with categorical columns and imputation included, or "
                             "torch.onnx.export) or a safetensors MLP (with embeddings for "
                             "categorical columns). It stays in your session."))


def model_panel() -> LoadedModel | None:
    name = st.session_state.get(keys.OWN_TABULAR_MODEL)
    sandbox.warm_up()  # the converters' process starts now, not at the first upload
    with st.expander("Your model", expanded=name is None):
        problem = onnx_support_problem()
        kind = st.radio("Format", [ONNX, MLP], horizontal=True, key=keys.OWN_TABULAR_KIND)
        if kind == ONNX and problem is not None:
            st.warning(problem)
        limit = upload_limit_mb()
        model_file = upload_box(
            f"Model file (up to {limit} MB)", type=["onnx"] if kind == ONNX else
            ["safetensors"], key=keys.own_tabular_file(kind == ONNX), limit_mb=limit,
            help="ONNX: the model's first floating-point output is explained (a classifier's "
                 "probabilities); it is converted after a trial run in a separate process (at "
                 f"most {MODEL_CHECK_SECONDS:g} s). MLP: an nn.Sequential saved as the "
                 f"attribute 'layers'. At most {MAX_MODEL_FEATURES:,} features and "
                 f"{MAX_MODEL_CLASSES:,} classes.")
        config = None
        if kind == MLP:
            config = upload_box(
                "Config (.json): activation, and optionally feature_names, class_names, "
                "output_kind, mean, std, categorical (column -> categories: an embedding "
                "per categorical column)", type=["json"], key=keys.OWN_TABULAR_CONFIG,
                limit_mb=max(1, MAX_CONFIG_BYTES // 2**20))
        reference = upload_box(
            "Reference rows (.csv, recommended): the header names the features; an optional "
            f"{'/'.join(LABEL_COLUMNS)} column holds labels", type=["csv"],
            key=keys.OWN_TABULAR_CSV,
            limit_mb=max(1, tab_io.MAX_CSV_BYTES // 2**20),
            help="Baselines (mean, median, a reference row), IG2's references and the "
                 "out-of-domain notice come from these rows.")
        blocked = model_file is None or (kind == ONNX and problem is not None) or (
            kind == MLP and config is None)
        if st.button("Load this model", key=keys.OWN_TABULAR_LOAD, disabled=blocked):
            _load(model_file, config, reference)
    name = st.session_state.get(keys.OWN_TABULAR_MODEL)
    spec = session_models.get(name) if name is not None else None
    if spec is not None:
        st.caption(f"Using **{spec.title}** (yours: other sessions do not see it).")
    if name is None or session_models.get(name) is None:
        st.info("Give the model file (and a reference CSV) and press **Load this model**.")
        return None
    return resources.load_ready_model(name)


def _load(model_file: Any, config_file: Any, reference_file: Any) -> None:
    def build() -> ModelSpec:
        check_model_upload_size(model_file.size, model_file.name)
        config = parse_mlp_config(config_file.getvalue()) if config_file is not None else None
        frame, label = (None, None) if reference_file is None else \
            _reference_frame(reference_file)
        encoded = encoded_upload_spec(model_file.getvalue(), model_file.name, config=config,
                                      reference=frame, label_column=label)
        if encoded is not None:  # categorical or imputed columns: explained after encoding
            return encoded
        reference = _reference(reference_file) if reference_file is not None else None
        return tabular_upload_spec(model_file.getvalue(), model_file.name, config=config,
                                   reference=reference)

    try:
        with st.spinner(f"Reading {model_file.name}…"):
            spec = build()
    except (ModelLoadError, tab_io.TabularInputError) as error:
        st.error(f"{model_file.name}: {error}")
        return
    except Exception as error:  # MemoryError included: one line, details in the log
        show_unexpected(error, f"Loading {model_file.name}")
        return
    session_models.define(spec)
    st.session_state[keys.OWN_TABULAR_MODEL] = spec.name
    show_evicted()


def _reference_frame(upload: Any) -> tuple[pd.DataFrame, str | None]:
    """The reference CSV as text cells, and its label column (if any)."""
    frame = tab_io.parse_csv(upload.getvalue())
    columns = [str(c).strip() for c in frame.columns]
    return frame, next((c for c in columns if c.lower() in LABEL_COLUMNS), None)


def _reference(upload: Any) -> tuple[tuple[str, ...], np.ndarray, np.ndarray | None]:
    """(feature names, raw rows, labels or None) from a reference CSV; every cell checked."""
    frame = tab_io.parse_csv(upload.getvalue())
    columns = [str(c).strip() for c in frame.columns]
    label = next((c for c in columns if c.lower() in LABEL_COLUMNS), None)
    names = tuple(c for c in columns if c != label)
    checked = tab_io.read_csv_rows(upload.getvalue(), names)
    if checked.values.shape[0] == 0:
        raise ModelLoadError(f"{upload.name}: none of its rows holds usable numbers.")
    labels = None
    if label is not None:
        raw = frame[label].iloc[list(checked.row_numbers)].astype(str).str.strip()
        try:
            labels = raw.astype(float).to_numpy()
        except ValueError as error:
            raise ModelLoadError(f"{upload.name}: the {label!r} column must hold class numbers "
                                 "or target values.") from error
    return names, checked.values, labels
