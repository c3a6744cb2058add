"""Tabular page, inputs: the model, a data-set row (searchable, editable) or a CSV, settings.

Bad cells are reported one by one (``st.error``); nothing is dropped without saying so, and the
other inputs and the last result stay on screen.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st
import torch

from attribution_core.limits import MAX_COLUMN_NAME_CHARS, MAX_CSV_COLUMNS
from attribution_core.modalities import tabular as tab_io
from attribution_core.modalities import tabular_categorical as cat_io
from attribution_core.models import domain
from attribution_core.models.inputs import pool_raw
from attribution_core.models.spec import LoadedModel
from dashboard.tabular import keys, logic, row_editor
from dashboard.widgets import catalog, own_tabular, resources
from dashboard.widgets.errors import log_unexpected, show_unexpected
from dashboard.widgets.sidebar import selected_model_key
from dashboard.widgets.upload_guard import upload_box

DATA_SET, UPLOAD = "Data set row", "Upload CSV"
MAX_PROBLEMS_SHOWN = 25


@dataclass(frozen=True)
class TabularInput:
    """The row explained in detail (raw values) and, for a CSV, every valid row."""

    name: str
    raw_row: np.ndarray
    digest: str
    outputs: torch.Tensor  # [C]
    csv_rows: np.ndarray | None = None  # [R, F] valid CSV rows
    csv_row_numbers: tuple[int, ...] = ()
    csv_digest: str = ""


def current_model() -> LoadedModel | None:
    """The sidebar's tabular model (standalone, with no sidebar, a picker on the page) or the
    user's own model, kept in this session."""
    if own_tabular.model_source() == own_tabular.YOURS:
        return own_tabular.model_panel()
    name = st.session_state.get(selected_model_key("tabular"))
    if name is None:
        entries = catalog.list_entries("tabular")
        if not entries:
            st.info("No tabular model is registered yet.")
            return None
        names = [e.spec.name for e in entries]
        titles = {e.spec.name: e.spec.title for e in entries}
        name = st.selectbox("Model", names, key=keys.MODEL_FALLBACK, format_func=titles.get)
    return resources.load_ready_model(name)


def _data_set(model: LoadedModel) -> pd.DataFrame | None:
    data = logic.pool(model)
    if data is None:
        return None
    schema = logic.schema(model)
    raw = pool_raw(model, data)
    frame = pd.DataFrame(raw, columns=list(logic.feature_names(model))) if schema is None \
        else cat_io.display_frame(schema, raw)
    labels = data.labels.detach().cpu()
    if logic.is_regression(model):
        frame.insert(0, "target", labels.double().numpy())
    else:
        frame.insert(0, "class", [logic.class_name(model, int(v)) for v in labels.tolist()])
    return frame


def input_panel(model: LoadedModel) -> TabularInput | None:
    mode = st.radio("Input", [DATA_SET, UPLOAD], horizontal=True, key=keys.INPUT_MODE)
    if mode == UPLOAD:
        return _csv_panel(model)
    return _data_set_panel(model)


def _data_set_panel(model: LoadedModel) -> TabularInput | None:
    frame = _data_set(model)
    names = logic.feature_names(model)
    if frame is None:
        st.caption("This model has no data set: type the row to explain (raw units; every "
                   "value starts at 0), or upload a CSV.")
        values = _row_editor(model, np.zeros(len(names)), keys.typed(model.spec.name))
        return None if values is None else _prepared(model, "typed row", values)
    where = "Your reference rows" if model.spec.source == "upload" else \
        "Held-out rows of the model's data set"
    st.caption(f"{where} ({len(frame)}). Search with the table's "
               "magnifier; click a row to pick it.")
    event = st.dataframe(frame, key=keys.table(model.spec.name), height=220,
                         on_select="rerun", selection_mode="single-row", width="stretch")
    selected = list(getattr(getattr(event, "selection", None), "rows", []) or [])
    row = st.number_input("Row number", 0, len(frame) - 1, 0,
                          key=keys.row(model.spec.name), disabled=bool(selected),
                          help="Or click a row in the table above.")
    index = int(selected[0]) if selected else int(row)
    schema = logic.schema(model)
    if schema is not None:  # categorical columns: one row, a select box per category column
        st.markdown(f"**Values of row {index}** (edit any cell; pick categories from the lists)")
        original = pool_raw(model, logic.pool(model))[index]  # type: ignore[arg-type]
        edited_row = row_editor.edit_row(model, schema, original, index)
        if edited_row is None:
            return None
        changed = not np.array_equal(edited_row, original, equal_nan=True)
        return _prepared(model, f"data set row {index}" + (" (edited)" if changed else ""),
                         edited_row)
    st.markdown(f"**Values of row {index}** (edit any cell; the table is in raw units)")
    start = frame.loc[index, list(names)].astype(float).to_numpy()
    values = _row_editor(model, start, keys.editor(model.spec.name, index))
    if values is None:
        return None
    changed = not np.allclose(values, start, rtol=0, atol=0)
    name = f"data set row {index}" + (" (edited)" if changed else "")
    return _prepared(model, name, values)


def _row_editor(model: LoadedModel, start: np.ndarray, key: str) -> np.ndarray | None:
    """One value per feature in raw units, editable; None (with the bad cells listed) when a
    cell cannot be used."""
    names = logic.feature_names(model)
    unit_of = dict(zip(names, logic.units(model), strict=True))
    editor = pd.DataFrame({"feature": list(names), "value": np.asarray(start, dtype=float),
                           "unit": [unit_of[n] for n in names]})
    edited = st.data_editor(editor, key=key, hide_index=True, width="stretch",
                            disabled=["feature", "unit"], num_rows="fixed",
                            height=min(420, 36 + 35 * len(names)))
    values, problems = tab_io.validate_edited_row(list(edited["value"]), names)
    if problems:
        st.error("Some edited values cannot be used:\n\n" + "\n".join(
            f"- {p.describe()}" for p in problems[:MAX_PROBLEMS_SHOWN]))
        return None
    return values


def _prepared(model: LoadedModel, name: str, values: np.ndarray, **extra: Any
              ) -> TabularInput | None:
    try:
        row = logic.model_row(model, values)
        outputs = logic.outputs_of(model, row)[0]
    except Exception as error:
        st.error(f"{name} could not be prepared for {model.spec.title}: {error}")
        return None
    _domain_notice(model, row)
    _prediction(model, outputs)
    return TabularInput(name, values, logic.digest_row(values), outputs, **extra)


def _domain_notice(model: LoadedModel, row: torch.Tensor) -> None:
    """Say so above the result when the row is unlike the model's reference rows."""
    try:
        check = domain.check_input(model, row.cpu())
    except Exception as error:  # a failed check must not hide the prediction
        log_unexpected(error, "The out-of-domain check")
        return
    if check is not None and check.message:
        st.warning(check.message, icon=":material/travel_explore:")


def _prediction(model: LoadedModel, outputs: torch.Tensor) -> None:
    if logic.is_regression(model):
        st.metric("Prediction", f"{float(outputs[0]):.4g}",
                  help=model.spec.class_names[0] if model.spec.class_names else None)
        return
    probs = logic.probabilities(model, outputs)
    rows = [{"class": logic.class_name(model, c), "probability": float(p)}
            for c, p in enumerate(probs.tolist())]
    st.dataframe(rows, hide_index=True, width="stretch", key=keys.PROBABILITIES,
                 column_config={"probability": st.column_config.ProgressColumn(
                     "probability", min_value=0.0, max_value=1.0, format="%.3f")})


def _csv_panel(model: LoadedModel) -> TabularInput | None:
    names = logic.feature_names(model)
    limit_mb = tab_io.MAX_CSV_BYTES / 1024**2
    upload = upload_box(
        f"CSV of rows (header = feature names; at most {limit_mb:.0f} MB, "
        f"{tab_io.MAX_CSV_ROWS:,} rows)", type=["csv"], key=keys.CSV,
        limit_mb=max(1, tab_io.MAX_CSV_BYTES // 2**20),
        help=f"At most {MAX_CSV_COLUMNS:,} columns, names up to {MAX_COLUMN_NAME_CHARS} "
             "characters, each name once.")
    schema = logic.schema(model)
    with st.expander("Expected columns", expanded=False):
        st.code(",".join(names), language=None)
        if schema is not None:
            st.code(row_editor.expected_columns(schema), language=None)
    if upload is None:
        st.info("Upload a CSV with the model's feature columns.")
        return None
    data = upload.getvalue()
    try:
        checked = _memo_read(data, names, schema)
    except tab_io.TabularInputError as error:
        st.error(f"{upload.name}: {error}")
        return None
    except Exception as error:  # MemoryError included: shown, logged, not remembered
        show_unexpected(error, f"Reading {upload.name}")
        return None
    _report_problems(upload.name, checked)
    row_editor.show_notes(getattr(checked, "notes", ()), upload.name)
    if checked.values.shape[0] == 0:
        st.error(f"{upload.name}: none of its {checked.n_rows_read} rows can be explained.")
        return None
    positions = list(range(len(checked.row_numbers)))
    chosen = st.selectbox("Row to explain in detail", positions, key=keys.CSV_ROW,
                          format_func=lambda i: f"CSV row {checked.row_numbers[i] + 1}")
    digest = hashlib.sha256(data).hexdigest()[:16]
    return _prepared(model, f"{upload.name}, row {checked.row_numbers[chosen] + 1}",
                     checked.values[chosen], csv_rows=checked.values,
                     csv_row_numbers=checked.row_numbers, csv_digest=digest)


def _memo_read(data: bytes, names: tuple[str, ...],
               schema: cat_io.TabularSchema | None = None) -> tab_io.RowValidation:
    """The CSV read once per session and content; a refused CSV is remembered as its error,
    so a rerun does not parse it again (other failures are not remembered). With a schema,
    categorical cells become category codes and imputed columns may be empty."""
    key = "csv:" + hashlib.sha256(data).hexdigest() + ":" + ",".join(names) + \
        ("" if schema is None else f":schema{hash(schema)}")
    memo = st.session_state.setdefault(keys.MEMO, {})
    if key not in memo:
        memo.clear()  # one CSV at a time is enough
        try:
            memo[key] = tab_io.read_csv_rows(data, names) if schema is None else \
                cat_io.read_csv_rows(data, schema)
        except tab_io.TabularInputError as error:
            memo[key] = error
    found = memo[key]
    if isinstance(found, tab_io.TabularInputError):
        raise found
    return found


def _report_problems(file_name: str, checked: tab_io.RowValidation) -> None:
    cell_problems = [p for p in checked.problems if p.row is not None]
    if checked.ignored_columns:
        st.warning(f"{file_name}: ignored column(s) that are not features of this model: "
                   + ", ".join(repr(c) for c in checked.ignored_columns) + ".")
    if cell_problems:
        rejected = checked.rejected_rows
        lines = [f"- {p.describe()}" for p in cell_problems[:MAX_PROBLEMS_SHOWN]]
        if len(cell_problems) > MAX_PROBLEMS_SHOWN:
            lines.append(f"- … and {len(cell_problems) - MAX_PROBLEMS_SHOWN} more bad cells")
        st.error(f"{file_name}: {len(cell_problems)} bad cell(s) in {len(rejected)} of "
                 f"{checked.n_rows_read} rows; these rows are not explained:\n\n"
                 + "\n".join(lines))
    st.caption(f"{checked.values.shape[0]} of {checked.n_rows_read} rows are valid.")


def settings_panel(model: LoadedModel, source: TabularInput | None
                   ) -> logic.TabularSettings | None:
    """Target, method, baseline and steps; shown even while the input is unusable. None
    (Explain disabled, the reason shown) when the settings cannot run on this model."""
    regression = logic.is_regression(model)
    if regression:
        target = 0
        output = model.spec.class_names[0] if model.spec.class_names else "output"
        st.caption(f"Explaining the predicted value ({output}).")
    else:
        n_classes = max(1, len(model.spec.class_names))
        probs = logic.probabilities(model, source.outputs) if source is not None else None
        target = st.selectbox(
            "Class to explain (default: the predicted class)", list(range(n_classes)),
            index=int(source.outputs.argmax()) if source is not None else 0,
            key=keys.target(model.spec.name, source.digest if source else "none"),
            format_func=lambda c: logic.class_name(model, c)
            + (f" (p = {float(probs[c]):.3f})" if probs is not None else ""))
    method = st.radio("Method", ["IG", "IG2", "both"], horizontal=True, key=keys.METHOD)
    usable = True
    if method != "IG" and logic.pool(model) is None:
        st.warning("IG2 needs reference rows of other classes, and this model has no data set: "
                   "choose IG.")
        usable = False
    kinds = list(logic.available_baselines(model))
    default = model.spec.default_baseline if model.spec.default_baseline in kinds else kinds[0]
    baseline = st.selectbox("Baseline (IG)", kinds, index=kinds.index(default),
                            key=keys.baseline(model.spec.name),
                            format_func=logic.baseline_labels(model).get)
    baseline_values = None
    if baseline == logic.TYPED:
        st.caption("Baseline values (raw units)")
        typed = _row_editor(model, np.zeros(len(logic.feature_names(model))),
                            keys.typed_baseline(model.spec.name))
        usable = usable and typed is not None
        baseline_values = None if typed is None else tuple(float(v) for v in typed)
    reference_row = 0
    if baseline == "reference_row":
        data = logic.pool(model)
        size = int(data.inputs.shape[0]) if data is not None else 1
        reference_row = int(st.number_input("Reference row (data set row number)", 0,
                                            size - 1, 0, key=keys.REFERENCE_ROW))
    auto = st.checkbox("Choose the step count automatically", key=keys.AUTO_STEPS)
    tolerance, n_steps = 0.01, "auto"
    if auto:
        tolerance = st.select_slider("Tolerance (relative completeness error)",
                                     [0.001, 0.005, 0.01, 0.02, 0.05], value=0.01,
                                     key=keys.TOLERANCE)
    else:
        n_steps = st.slider("Steps", 4, 1024, 64, step=4, key=keys.STEPS)  # type: ignore
    curve = st.checkbox("Convergence curve (also 1/8, 1/4, 1/2 of the steps)", value=True,
                        key=keys.CURVE)
    n_refs, choice, ig2_steps, step_size, seed = 8, "other", 32, "auto", 0
    if method != "IG":
        with st.expander("IG2 options", expanded=False):
            n_refs = st.slider("Reference rows", 1, 32, 8, key=keys.IG2_REFS)
            if not regression:
                choice = st.radio("Reference classes", ["other", "relevant"], horizontal=True,
                                  key=keys.IG2_CHOICE,
                                  format_func={"other": "any other class",
                                               "relevant": "2nd-4th most likely"}.get)
            else:
                st.caption("Regression: references are rows whose target is far from the "
                           "prediction.")
            ig2_steps = st.slider("Path steps", 2, 256, 32, key=keys.IG2_STEPS)
            if not st.checkbox("Automatic step size", value=True, key=keys.IG2_AUTO_ETA):
                step_size = float(st.number_input(
                    "Step size (standardised units)", 1e-4, 10.0,
                    float(model.spec.ig2_step_size), format="%.4f", key=keys.IG2_ETA))
            seed = int(st.number_input("Seed (reference draw)", 0, 10_000, 0, key=keys.SEED))
    if not usable:
        return None
    return logic.TabularSettings(
        method=method, target=int(target), baseline=baseline,  # type: ignore[arg-type]
        reference_row=reference_row, baseline_values=baseline_values,
        n_steps=n_steps, tolerance=float(tolerance),  # type: ignore[arg-type]
        convergence_curve=bool(curve), n_references=int(n_refs),
        reference_choice=choice, ig2_steps=int(ig2_steps), ig2_step_size=step_size,  # type: ignore
        seed=seed)
