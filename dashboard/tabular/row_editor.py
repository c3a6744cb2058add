"""Tabular page, rows with categorical columns: a one-row editor with a select box per
categorical column, and the notes on cells that are kept but read in a particular way (an empty
cell the pipeline imputes, a category the encoder does not know but accepts)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import streamlit as st

from attribution_core.modalities import tabular_categorical as cat_io
from attribution_core.modalities.tabular import CellProblem
from attribution_core.models.spec import LoadedModel
from dashboard.tabular import keys

MISSING_OPTION = "(missing)"
MAX_NOTES_SHOWN = 25


def options(column: cat_io.TabularColumn) -> list[str]:
    """The select box's choices: the categories, then an empty cell where it is allowed."""
    found = list(column.categories)
    if column.missing != "refused":
        found.append(MISSING_OPTION)
    if column.unknown_accepted:
        found.append(cat_io.display_value(column, float(column.unknown_code)))
    return found


def edit_row(model: LoadedModel, schema: cat_io.TabularSchema, raw: np.ndarray, index: int
             ) -> np.ndarray | None:
    """The row ``raw`` [F] in an editable table (numbers, select boxes); its raw values after
    editing, or None (with the per-cell messages shown) when a cell cannot be used."""
    cells: dict[str, list[object]] = {}
    config: dict[str, object] = {}
    for column, value in zip(schema.columns, raw, strict=True):
        shown = cat_io.display_value(column, float(value))
        if column.kind == "numeric":
            cells[column.name] = [None if value != value else float(value)]
            config[column.name] = st.column_config.NumberColumn(
                column.name, help=column.missing_note or "a number", format="%.6g")
        else:
            cells[column.name] = [MISSING_OPTION if shown == "(missing)" else shown]
            config[column.name] = st.column_config.SelectboxColumn(
                column.name, options=options(column), required=column.missing == "refused",
                help=f"{len(column.categories)} categories"
                     + (f"; empty: {column.missing_note}" if column.missing != "refused"
                        else ""))
    editor = pd.DataFrame(cells, columns=list(schema.names))
    edited = st.data_editor(editor, key=keys.cat_editor(model.spec.name, index),
                            hide_index=True, width="stretch", num_rows="fixed",
                            column_config=config)
    values, problems, notes = cat_io.validate_edited_row(
        [edited[name].iloc[0] for name in schema.names], schema)
    if problems:
        st.error("Some edited values cannot be used:\n\n" + "\n".join(
            f"- {p.describe()}" for p in problems[:MAX_NOTES_SHOWN]))
        return None
    show_notes(notes)
    return values


def show_notes(notes: Sequence[CellProblem], file_name: str | None = None) -> None:
    """Cells that were kept with a note, as one info box."""
    if not notes:
        return
    lines = [f"- {n.describe()}" for n in notes[:MAX_NOTES_SHOWN]]
    if len(notes) > MAX_NOTES_SHOWN:
        lines.append(f"- … and {len(notes) - MAX_NOTES_SHOWN} more")
    st.info((f"{file_name}: " if file_name else "") + f"{len(notes)} cell(s) are read as the "
            "pipeline reads them:\n\n" + "\n".join(lines))


def expected_columns(schema: cat_io.TabularSchema) -> str:
    """The columns a CSV needs, with each categorical column's categories."""
    lines = []
    for column in schema.columns:
        if column.kind == "numeric":
            what = "number" + (" (may be empty: imputed)" if column.missing != "refused" else "")
        else:
            shown = ", ".join(column.categories[:20]) + (" …" if len(column.categories) > 20
                                                           else "")
            what = f"one of {shown}" + (" (may be empty)" if column.missing != "refused"
                                        else "")
        lines.append(f"{column.name}: {what}")
    return "\n".join(lines)
