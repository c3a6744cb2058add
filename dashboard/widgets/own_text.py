""""Your model" on the text page: a Hugging Face sequence classifier's folder as a zip, and
optional reference texts (IG2's references, the Evaluate page's cases, the out-of-domain
notice).

Like the image and tabular pages' own models, the result is this session's alone
(:mod:`dashboard.widgets.session_models`): other sessions neither list nor load it. Files are
read when **Load this model** is pressed; the zip is checked and extracted into a private
temporary folder that is deleted once the model is in memory
(:mod:`attribution_core.models.hf_upload`).
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from attribution_core.evaluation.types import EvaluationInputError
from attribution_core.evaluation.uploads_csv import read_text_csv
from attribution_core.limits import (
    MAX_MODEL_JSON_BYTES,
    MAX_MODEL_TOKENIZER_BYTES,
    MAX_MODEL_ZIP_ENTRIES,
    MAX_REFERENCE_TEXTS,
    OTHER_UPLOADS_MB,
)
from attribution_core.models.spec import LoadedModel, ModelLoadError, ModelSpec
from attribution_core.models.uploads import check_model_upload_size
from dashboard.widgets import keys, resources, session_models
from dashboard.widgets.errors import show_unexpected
from dashboard.widgets.own_models import upload_limit_mb
from dashboard.widgets.upload_guard import upload_box


def text_model_panel() -> LoadedModel | None:
    """Load the user's own text classifier (kept in this session) and return it, or None."""
    name = st.session_state.get(keys.OWN_TEXT_MODEL)
    with st.expander("Your model", expanded=name is None):
        limit = upload_limit_mb()
        archive = upload_box(
            f"Model folder as a .zip (up to {limit} MB)", type=["zip"], key=keys.OWN_TEXT_ZIP,
            limit_mb=limit,
            help="Zip the folder that model.save_pretrained() and tokenizer.save_pretrained() "
                 "wrote: config.json, model.safetensors and the tokenizer files. Loaded with "
                 "trust_remote_code=False; pickles (.bin, .pt, .pkl) and custom code are "
                 "refused.")
        st.caption(f"A Hugging Face *ForSequenceClassification model; class names from its "
                   f"id2label. At most {MAX_MODEL_ZIP_ENTRIES} files, no sub-folders, the "
                   f"whole folder up to {limit} MB unpacked, JSON files up to "
                   f"{MAX_MODEL_JSON_BYTES // 2**20} MB and tokenizer files up to "
                   f"{MAX_MODEL_TOKENIZER_BYTES // 2**20} MB each.")
        references = upload_box(
            f"Reference texts (optional .csv, up to {MAX_REFERENCE_TEXTS} rows): a text column, "
            "optionally a label column (class numbers)", type=["csv"], key=keys.OWN_TEXT_REFS,
            limit_mb=OTHER_UPLOADS_MB,
            help="IG2 walks towards reference texts of other classes; the Evaluate page can "
                 "audit the model on them, and the out-of-domain notice compares your text "
                 "with them. Without them IG2 draws from the bundled sentences.")
        if st.button("Load this model", key=keys.OWN_TEXT_LOAD, disabled=archive is None):
            assert archive is not None  # the button is disabled otherwise
            _load(archive, references)
        for note in st.session_state.get(keys.OWN_TEXT_NOTES, ()):
            st.warning(note)
    name = st.session_state.get(keys.OWN_TEXT_MODEL)
    spec = session_models.get(name) if name is not None else None
    if spec is None:
        st.info("Give the model folder as a .zip and press **Load this model**.")
        return None
    st.caption(f"Using **{spec.title}** (yours: other sessions do not see it).")
    ignored = spec.metadata.get("ignored") or ()
    if ignored:
        st.caption("Left in the zip (not part of the model): " + ", ".join(ignored[:8]))
    return resources.load_ready_model(spec.name)


def _reference_texts(upload: Any) -> tuple[list[str], list[int] | None, list[str]]:
    """Texts, their labels (None unless every row has one) and the rows left out."""
    read = read_text_csv(upload.getvalue(), max_cases=MAX_REFERENCE_TEXTS)
    texts = [item.text for item in read.items]
    labels = [item.label for item in read.items]
    complete = all(isinstance(label, int) for label in labels)
    return texts, [int(v) for v in labels] if complete else None, list(read.skipped)  # type: ignore[arg-type]


def _load(archive: Any, references: Any) -> None:
    """Build the spec; on success make it this session's text model, else say why in one line
    (the model loaded before, if any, stays)."""
    notes: list[str] = []

    def build() -> ModelSpec:
        check_model_upload_size(archive.size, archive.name)
        texts, labels = None, None
        if references is not None:
            try:
                texts, labels, skipped = _reference_texts(references)
            except EvaluationInputError as error:
                raise ModelLoadError(f"{references.name}: {error}") from error
            notes.extend(f"{references.name}: {line}" for line in skipped[:5])
        return text_upload_spec(archive.getvalue(), archive.name, reference_texts=texts,
                                reference_labels=labels)

    from attribution_core.models.hf_upload import text_upload_spec

    try:
        with st.spinner(f"Reading {archive.name}…"):
            spec = build()
    except ModelLoadError as error:  # its message names the file
        st.error(str(error))
        return
    except Exception as error:  # MemoryError included: one line, details in the log
        show_unexpected(error, f"Loading {archive.name}")
        return
    session_models.define(spec)
    st.session_state[keys.OWN_TEXT_MODEL] = spec.name
    st.session_state[keys.OWN_TEXT_NOTES] = tuple(notes)
