"""Text page, inputs: the model (sidebar pick, zero-shot labels, Hugging Face), the text, settings.

Every failure becomes an ``st.error`` with the reason; the other inputs and the last result stay.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import streamlit as st
import torch

from attribution_core.limits import (
    MAX_LABEL_CHARS,
    MAX_LABEL_DESCRIPTION_CHARS,
    MAX_ZERO_SHOT_LABELS,
)
from attribution_core.modalities import text as text_io
from attribution_core.models.domain_text import check_text
from attribution_core.models.sources import ModelSourceRefused, resolve_model_source
from attribution_core.models.spec import LoadedModel, ModelSpec
from dashboard.text import keys, logic
from dashboard.widgets import catalog, digests, resources, session_models
from dashboard.widgets import keys as widget_keys
from dashboard.widgets.errors import log_unexpected, show_unexpected
from dashboard.widgets.own_text import text_model_panel
from dashboard.widgets.sidebar import selected_model_key
from dashboard.widgets.upload_guard import upload_box

MAX_UPLOAD_BYTES = 1024 * 1024
DEFAULT_TEXT = "The food was wonderful and the staff were friendly."
SIDEBAR, HUGGING_FACE = "Model from the sidebar", "Hugging Face classifier"
YOURS = "Your model"
MEMO_ITEMS = 16
HF_MODEL_KEY = keys.HF_MODEL


@dataclass(frozen=True)
class TextInput:
    """The text being explained, as the model reads it, and the model's prediction."""

    text: str
    name: str
    encoded: text_io.EncodedText
    probabilities: torch.Tensor
    digest: str


# -- the model -------------------------------------------------------------------------------

def _hugging_face_model(typed: str, device_name: str) -> LoadedModel:
    """The Hugging Face classifier ``typed`` names, if the source policy allows it, loaded once
    per session: a stranger's session neither lists it nor gets it from a shared cache."""
    from attribution_core.models.loaders import load_hf_text_classifier

    resolved = resolve_model_source(typed)  # refusals all read the same (sources.py)
    held = st.session_state.get(HF_MODEL_KEY)
    if held is not None and held[0] == (resolved.load_path, device_name):
        return held[1]
    st.session_state.pop(HF_MODEL_KEY, None)  # one Hugging Face model per session in memory
    loaded = load_hf_text_classifier(resolved.load_path, device=device_name,
                                     allow_download=False, display_name=resolved.display_name)
    st.session_state[HF_MODEL_KEY] = ((resolved.load_path, device_name), loaded)
    return loaded


def _builtin_name() -> str | None:
    """The sidebar's choice; standalone (no sidebar, e.g. in tests) a picker on the page."""
    chosen = st.session_state.get(selected_model_key("text"))
    if chosen is not None:
        return str(chosen)
    entries = catalog.list_entries("text")
    if not entries:
        st.info("No text model is registered yet.")
        return None
    names = [e.spec.name for e in entries]
    titles = {e.spec.name: e.spec.title + ("" if e.status.ready else " (not ready)")
              for e in entries}
    return st.selectbox("Model", names, key=keys.MODEL_FALLBACK, format_func=titles.get)


def current_model() -> LoadedModel | None:
    source = st.radio("Model source", [SIDEBAR, YOURS, HUGGING_FACE], horizontal=True,
                      key=widget_keys.MODEL_SOURCE["text"],
                      help="Your model: a Hugging Face sequence classifier's folder uploaded "
                           "as a zip; it stays in your session. Hugging Face: a sequence "
                           "classifier by hub id (already in the server's Hugging Face cache) "
                           "or a folder under the model folders the operator shared. Both "
                           "load with trust_remote_code=False.")
    if source == HUGGING_FACE:
        return _hugging_face_panel()
    if source == YOURS:
        return text_model_panel()
    name = _builtin_name()
    if name is None:
        return None

    def with_user_labels(spec: ModelSpec) -> str:
        if "label_descriptions" not in spec.metadata:
            return spec.name
        return _zero_shot_labels(spec.name, dict(spec.metadata["label_descriptions"]))

    return resources.load_ready_model(name, resolve=with_user_labels)


def _hugging_face_panel() -> LoadedModel | None:
    source = st.text_input("Hub id or local folder", key=keys.HF_SOURCE,
                           placeholder="distilbert-base-uncased-finetuned-sst-2-english")
    if st.button("Load", key=keys.HF_LOAD) and source.strip():
        st.session_state[keys.HF_LOADED] = source.strip()
    loaded_source = st.session_state.get(keys.HF_LOADED)
    if not loaded_source:
        st.info("Type a hub id (already in the server's Hugging Face cache) or a folder the "
                "operator shared, and press **Load**.")
        return None
    try:
        with st.spinner(f"Loading {loaded_source}…"):
            return _hugging_face_model(loaded_source, resources.active_device_name())
    except ModelSourceRefused as error:  # one message whatever the reason (sources.py)
        st.error(str(error))
        return None
    except Exception as error:
        st.error(f"Could not load {loaded_source}: {error}")
        return None


def parse_labels(text: str) -> dict[str, str]:
    """``label: description`` per line (a bare label describes itself), within the limits of
    ``attribution_core.limits`` (count and lengths: each label costs an embedding per run)."""
    lines = [line for line in text.splitlines() if line.strip()]
    text_io.check_label_count(len(lines))
    labels: dict[str, str] = {}
    for line in lines:
        label, _, description = line.partition(":")
        label, description = label.strip(), description.strip()
        if not label:
            raise ValueError(f"The line {line.strip()[:40]!r} has no label before the colon.")
        text_io.check_label(label, description)
        if label in labels:
            raise ValueError(f"The label {label!r} appears twice.")
        labels[label] = description or label
    if len(labels) < 2:
        raise ValueError("A zero-shot classifier needs at least two labels, one per line.")
    return labels


def _zero_shot_labels(base_name: str, defaults: dict[str, str]) -> str:
    """Editable label set of a MiniLM zero-shot model; returns the model name to use."""
    store = keys.zero_shot(base_name)
    with st.expander("Zero-shot labels (editable)", expanded=False):
        st.caption("One class per line as `label: description`. The class score is the "
                   "cosine similarity of the text's embedding to the description's, scaled. "
                   f"At most {MAX_ZERO_SHOT_LABELS} labels of {MAX_LABEL_CHARS} characters, "
                   f"descriptions up to {MAX_LABEL_DESCRIPTION_CHARS} characters.")
        default_text = "\n".join(f"{k}: {v}" for k, v in defaults.items())
        typed = st.text_area("Labels", default_text, key=keys.labels(base_name), height=140)
        apply, reset = st.columns(2)
        if apply.button("Use these labels", key=keys.labels_apply(base_name)):
            try:
                st.session_state[store] = _define_zero_shot(base_name, parse_labels(typed))
            except ValueError as error:  # TextInputError and ModelLoadError: a reason to show
                st.error(f"The labels could not be used: {error}")
            except Exception as error:  # logged with a reference; one line on the page
                show_unexpected(error, "Using these labels")
        if reset.button("Back to the built-in labels", key=keys.labels_reset(base_name)):
            st.session_state.pop(store, None)
    chosen = st.session_state.get(store, base_name)
    if chosen != base_name:
        st.caption(f"Using your label set ({chosen}).")
    return str(chosen)


def _define_zero_shot(base_name: str, labels: dict[str, str]) -> str:
    """The user's label set as a model of this session only (never the shared registry)."""
    from attribution_core.models.builtin_text import zero_shot_spec

    tag = hashlib.sha256(repr(sorted(labels.items())).encode()).hexdigest()[:8]
    name = f"{base_name}_custom_{tag}"
    session_models.define(zero_shot_spec(name, labels,
                                         f"MiniLM zero-shot ({', '.join(labels)})"))
    return name


# -- the text --------------------------------------------------------------------------------

def _samples(model: LoadedModel) -> list[Any]:
    if model.spec.samples is None:
        return []
    try:
        return [s for s in model.spec.samples() if isinstance(s.value, str)]
    except Exception as error:
        st.warning(f"The bundled examples could not be read: {error}")
        return []


def input_panel(model: LoadedModel) -> TextInput | None:
    """Type, pick a bundled example or upload a .txt; show the tokens and the prediction."""
    samples = _samples(model)
    modes = ["Type or paste", "Bundled example", "Upload .txt"] if samples else \
        ["Type or paste", "Upload .txt"]
    mode = st.radio("Input", modes, horizontal=True, key=keys.INPUT_MODE)
    text: str | None = None
    name = "typed text"
    if mode == "Bundled example":
        labels = [s.name + (f" ({s.label_name})" if s.label_name else "") for s in samples]
        index = st.selectbox("Example", range(len(samples)), key=keys.sample(model.spec.name),
                             format_func=lambda i: f"{labels[i]}: {samples[i].value[:60]}")
        text, name = samples[index].value, samples[index].name
        st.text_area("Text", text, key=keys.sample_view(model.spec.name, index),
                     disabled=True, height=90)
    elif mode == "Upload .txt":
        text, name = _uploaded_text()
    else:
        if keys.TEXT not in st.session_state:
            st.session_state[keys.TEXT] = samples[0].value if samples else DEFAULT_TEXT
        text = st.text_area("Text to explain", key=keys.TEXT, height=110)
    if text is None:
        return None
    try:
        encoded = _memo_encode(model, text)
        probs = _memo_probabilities(model, encoded)
    except text_io.TextInputError as error:
        st.error(str(error))
        return None
    except Exception as error:  # the model could not read it: say so, keep the page
        st.error(f"The text could not be prepared for {model.spec.title}: {error}")
        return None
    warning = text_io.truncation_message(encoded)
    if warning:
        st.warning(warning)
    _domain_notice(model, encoded)
    st.caption(f"{encoded.length} tokens ({encoded.n_content_tokens} without special tokens)"
               f" · model maximum {encoded.max_length}")
    _probability_table(model, probs)
    return TextInput(text, name, encoded, probs, digests.text_hex(text))


def _domain_notice(model: LoadedModel, encoded: text_io.EncodedText) -> None:
    """Say so above the result when the text is unlike the model's reference texts."""
    ids = ",".join(str(i) for i in encoded.input_ids[0].tolist())
    key = f"domain:{model.spec.name}:{model.weights_hash}:{encoded.n_tokens_full}:" + \
        hashlib.sha256(ids.encode()).hexdigest()[:16]
    memo = _memo()
    try:
        if key not in memo:
            memo[key] = check_text(model, encoded)
        check = memo[key]
    except Exception as error:  # a failed check must not hide the prediction
        log_unexpected(error, "The out-of-domain check")
        return
    if check is not None and check.message:
        st.warning(check.message, icon=":material/travel_explore:")


def _uploaded_text() -> tuple[str | None, str]:
    upload = upload_box("Upload a .txt file (UTF-8, up to 1 MB)", type=["txt"],
                        key=keys.UPLOAD, limit_mb=max(1, MAX_UPLOAD_BYTES // 2**20))
    if upload is None:
        st.info("Upload a .txt file to explain.")
        return None, ""
    data = upload.getvalue()
    if len(data) > MAX_UPLOAD_BYTES:
        st.error(f"{upload.name} is {len(data) / 1024**2:.1f} MB; at most 1 MB of text is "
                 "accepted.")
        return None, upload.name
    try:
        return data.decode("utf-8-sig"), upload.name
    except UnicodeDecodeError as error:
        st.error(f"{upload.name} is not UTF-8 text ({error.reason} at byte {error.start}).")
        return None, upload.name


def _memo() -> dict[str, Any]:
    memo = st.session_state.setdefault(keys.MEMO, {})
    while len(memo) > MEMO_ITEMS:
        memo.pop(next(iter(memo)))
    return memo


def _memo_encode(model: LoadedModel, text: str) -> text_io.EncodedText:
    key = f"enc:{model.spec.name}:{model.weights_hash}:{digests.text_hex(text)}"
    memo = _memo()
    if key not in memo:
        memo[key] = logic.encode(model, text)
    return memo[key]


def _memo_probabilities(model: LoadedModel, encoded: text_io.EncodedText) -> torch.Tensor:
    ids = ",".join(str(i) for i in encoded.input_ids[0].tolist())
    key = f"probs:{model.spec.name}:{model.weights_hash}:" + hashlib.sha256(
        ids.encode()).hexdigest()[:16]
    memo = _memo()
    if key not in memo:
        memo[key] = logic.probabilities(model, encoded)
    return memo[key]


def class_label(names: Sequence[str], index: int) -> str:
    name = str(names[index]) if index < len(names) else str(index)
    return name if name == str(index) else f"{index}: {name}"


def _probability_table(model: LoadedModel, probs: torch.Tensor) -> None:
    rows = [{"class": class_label(model.spec.class_names, c), "probability": float(p)}
            for c, p in enumerate(probs.tolist())]
    rows.sort(key=lambda r: -r["probability"])
    st.dataframe(rows, hide_index=True, width="stretch", key=keys.PROBABILITIES,
                 column_config={"probability": st.column_config.ProgressColumn(
                     "probability", min_value=0.0, max_value=1.0, format="%.3f")})


# -- settings --------------------------------------------------------------------------------

def settings_panel(model: LoadedModel, source: TextInput | None) -> logic.TextSettings:
    """Target, method, baseline and steps; shown even while the text is unusable."""
    n_classes = max(1, len(model.spec.class_names))
    probs = source.probabilities if source is not None else None
    target = st.selectbox(
        "Class to explain (default: the predicted class)", list(range(n_classes)),
        index=int(probs.argmax()) if probs is not None else 0,
        key=keys.target(model.spec.name, source.digest if source else "none"),
        format_func=lambda c: class_label(model.spec.class_names, c)
        + (f" (p = {float(probs[c]):.3f})" if probs is not None else ""))
    method = st.radio("Method", ["IG", "IG2", "both"], horizontal=True, key=keys.METHOD,
                      help="IG2 walks towards reference sentences of other classes.")
    kinds = list(text_io.BASELINE_KINDS)
    default = model.spec.default_baseline if model.spec.default_baseline in kinds else "pad"
    baseline = st.selectbox("Baseline (IG)", kinds, index=kinds.index(default),
                            key=keys.BASELINE, format_func=text_io.BASELINE_LABELS.get,
                            help="Every ordinary token is replaced; [CLS], [SEP] and other "
                                 "special tokens stay as in the input.")
    auto = st.checkbox("Choose the step count automatically", key=keys.AUTO_STEPS)
    tolerance = 0.01
    n_steps: int | str
    if auto:
        tolerance = st.select_slider("Tolerance (relative completeness error)",
                                     [0.001, 0.005, 0.01, 0.02, 0.05], value=0.01,
                                     key=keys.TOLERANCE)
        n_steps = "auto"
    else:
        n_steps = st.slider("Steps", 4, 512, 64, step=4, key=keys.STEPS)
    curve = st.checkbox("Convergence curve (also runs 1/4 and 1/2 of the steps)", value=True,
                        key=keys.CURVE)
    n_refs, choice, ig2_steps, step_size, seed = 4, "other", 16, "auto", 0
    if method != "IG":
        with st.expander("IG2 options", expanded=False):
            n_refs = st.slider("Reference sentences", 1, 16, 4, key=keys.IG2_REFS)
            choice = st.radio("Reference classes", ["other", "relevant"], horizontal=True,
                              key=keys.IG2_CHOICE,
                              format_func={"other": "any other class",
                                           "relevant": "2nd-4th most likely"}.get)
            ig2_steps = st.slider("Path steps", 2, 128, 16, key=keys.IG2_STEPS)
            if not st.checkbox("Automatic step size (path as long as the distance to the "
                               "references)", value=True, key=keys.IG2_AUTO_ETA):
                step_size = float(st.number_input(
                    "Step size (embedding units)", 1e-4, 10.0, float(model.spec.ig2_step_size),
                    format="%.4f", key=keys.IG2_ETA))
            seed = int(st.number_input("Seed (reference draw)", 0, 10_000, 0, key=keys.SEED))
    return logic.TextSettings(
        method=method, target=int(target), baseline=baseline, n_steps=n_steps,  # type: ignore
        tolerance=float(tolerance), convergence_curve=bool(curve), n_references=int(n_refs),
        reference_choice=choice, ig2_steps=int(ig2_steps), ig2_step_size=step_size,  # type: ignore
        seed=seed)
