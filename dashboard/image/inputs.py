"""Image page, left half: the model, the input image, its prediction and the run settings.

Every failure is turned into an ``st.error`` with the reason; nothing here lets a traceback
reach the page, and a bad upload falls back to the last good image so nothing is lost.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import streamlit as st
import torch
from PIL import Image

from attribution_core.limits import (
    MAX_FRAMES_COUNTED,
    MAX_KEPT_SIDE,
    OTHER_UPLOADS_MB,
    SESSION_IMAGE_MEMO_BYTES,
)
from attribution_core.modalities import image as image_io
from attribution_core.models import domain
from attribution_core.models.inputs import display_array
from attribution_core.models.spec import LoadedModel
from dashboard.image import keys, logic
from dashboard.widgets import digests, own_models, resources
from dashboard.widgets.errors import log_unexpected, show_unexpected
from dashboard.widgets.memo import ByteBoundedMemo
from dashboard.widgets.sidebar import selected_model_key
from dashboard.widgets.upload_guard import upload_box

SMALL_INPUT_VALUES = 4096


@dataclass(frozen=True)
class ImageInput:
    """The image being explained, as decoded, as the model sees it, and its prediction."""

    name: str
    picture: Image.Image
    inputs: torch.Tensor
    digest: str
    probabilities: torch.Tensor
    prep: image_io.ImagePreprocessing
    notes: tuple[str, ...]


def current_model() -> LoadedModel | None:
    """The model picked in the sidebar (loaded once per process) or the user's own model (kept
    in this session); None, with a message, when there is none."""
    if own_models.image_source() == own_models.YOURS:
        return own_models.image_model_panel()
    name = st.session_state.get(selected_model_key("image"))
    if name is None:
        st.info("Pick an image model in the sidebar (none is available yet).")
        return None
    return resources.load_ready_model(name)


def _memo() -> ByteBoundedMemo:
    """Decoded uploads and predictions of this session, bounded by the bytes they hold."""
    memo = st.session_state.get(keys.MEMO)
    if not isinstance(memo, ByteBoundedMemo):
        memo = st.session_state[keys.MEMO] = ByteBoundedMemo(SESSION_IMAGE_MEMO_BYTES)
    return memo


def _decode_upload(data: bytes) -> image_io.DecodedImage:
    key = "decode:" + hashlib.sha256(data).hexdigest()
    return _memo().remembered(key, lambda: image_io.decode_image(data))


def _samples(model: LoadedModel) -> Sequence[Any]:
    if model.spec.samples is None:
        return ()
    try:
        return list(model.spec.samples())
    except Exception as error:
        st.warning(f"The bundled samples could not be read: {error}")
        return ()


def input_panel(model: LoadedModel) -> ImageInput | None:
    """Choose a bundled sample or upload an image; show it beside the model's input."""
    samples = _samples(model)
    sources = ["Bundled sample", "Upload"] if samples else ["Upload"]
    source = st.radio("Input", sources, horizontal=True, key=keys.SOURCE)
    picked: tuple[str, Image.Image, tuple[str, ...]] | None = None
    if source == "Bundled sample":
        names = [sample.name for sample in samples]
        label_of = {s.name: s.name + (f" (label {s.label_name})" if s.label_name else "")
                    for s in samples}
        name = st.selectbox("Sample", names, key=keys.sample(model.spec.name),
                            format_func=lambda n: label_of[n])
        sample = samples[names.index(name)]
        picked = (name, sample.value, ())
        _gallery(samples)
    else:
        upload = upload_box(
            "Upload an image (PNG, JPEG, WebP, BMP, TIFF, GIF; up to "
            f"{image_io.MAX_PIXELS // 1_000_000} megapixels)",
            type=list(image_io.UPLOAD_EXTENSIONS), key=keys.UPLOAD,
            limit_mb=OTHER_UPLOADS_MB,
            help=f"Only the first of up to {MAX_FRAMES_COUNTED} frames or pages is read; "
                 f"pictures larger than {MAX_KEPT_SIDE} pixels a side are reduced on arrival "
                 "(the model sees far fewer).")
        if upload is not None:
            try:
                decoded = _decode_upload(upload.getvalue())
                picked = (upload.name, decoded.image, decoded.notes)
                st.session_state[keys.LAST_GOOD] = picked
            except image_io.ImageInputError as error:
                st.error(f"{upload.name}: {error}")
            except Exception as error:  # MemoryError included: shown, logged, not remembered
                show_unexpected(error, f"Reading {upload.name}")
        if picked is None and keys.LAST_GOOD in st.session_state:
            picked = st.session_state[keys.LAST_GOOD]
            st.info(f"Still using the last good image, {picked[0]}.")
    if picked is None:
        st.info("Upload an image to explain.")
        return None
    return _prepare(model, *picked)


def _gallery(samples: Sequence[Any]) -> None:
    with st.expander("Sample gallery", expanded=False):
        columns = st.columns(min(6, len(samples)))
        for index, sample in enumerate(samples):
            with columns[index % len(columns)]:
                st.image(_thumbnail(sample.value), caption=sample.name, width=72)


def _thumbnail(picture: Image.Image) -> np.ndarray:
    shown = picture.convert("RGB")
    if min(shown.size) < 64:  # tiny digits would be blurred by the browser: enlarge crisply
        factor = int(np.ceil(64 / min(shown.size)))
        shown = shown.resize((shown.width * factor, shown.height * factor),
                             Image.Resampling.NEAREST)
    return np.asarray(shown)


def _prepare(model: LoadedModel, name: str, picture: Image.Image, notes: tuple[str, ...]
             ) -> ImageInput | None:
    try:
        inputs = logic.model_input(model, picture)
        digest = digests.tensor_hex(inputs)
        key = f"probs:{model.spec.name}:{model.weights_hash}:{digest}"
        probs = _memo().remembered(key, lambda: logic.probabilities(model, inputs)[0])
        prep = logic.preprocessing_for(model, inputs)
    except (ValueError, RuntimeError, image_io.ImageInputError) as error:
        st.error(f"{name} could not be prepared for {model.spec.title}: {error}")
        return None
    except Exception as error:  # MemoryError included: shown, logged, not remembered
        show_unexpected(error, f"Preparing {name} for {model.spec.title}")
        return None
    original, model_view = st.columns(2)
    with original:
        st.image(_thumbnail(picture), caption=f"{name} ({picture.width}x{picture.height})",
                 width=200)
    with model_view:
        shown = display_array(model, inputs[0].cpu(), prep)
        st.image(_thumbnail(Image.fromarray(shown)),
                 caption=f"model input ({prep.size[1]}x{prep.size[0]}, {prep.channels} ch)",
                 width=200)
    for note in notes:
        st.caption(f"Converted: {note}.")
    _domain_notice(model, inputs, digest)
    rows = [{"class": logic.class_label(model.spec.class_names, index), "probability": p}
            for index, _name, p in logic.top_classes(probs, model.spec.class_names)]
    st.dataframe(rows, hide_index=True, width="stretch",
                 column_config={"probability": st.column_config.ProgressColumn(
                     "probability", min_value=0.0, max_value=1.0, format="%.3f")})
    return ImageInput(name, picture, inputs, digest, probs, prep, notes)


def _domain_notice(model: LoadedModel, inputs: torch.Tensor, digest: str) -> None:
    """Say so above the result when the picture is unlike the model's reference images."""
    key = f"domain:{model.spec.name}:{model.weights_hash}:{digest}"
    try:
        check = _memo().remembered(key, lambda: domain.check_input(model, inputs))
    except Exception as error:  # a failed check must not hide the prediction
        log_unexpected(error, "The out-of-domain check")
        return
    if check is not None and check.message:
        st.warning(check.message, icon=":material/travel_explore:")


def _default_baseline(model: LoadedModel) -> str:
    wanted = {"zeros": "black", "zero": "black"}.get(model.spec.default_baseline,
                                                     model.spec.default_baseline)
    return wanted if wanted in image_io.BASELINE_KINDS else "black"


def settings_panel(model: LoadedModel, source: ImageInput) -> tuple[logic.ImageSettings,
                                                                   Image.Image | None]:
    """Target, method, baseline and steps (IG2 options in an expander)."""
    classes = list(range(source.probabilities.numel()))
    predicted = int(source.probabilities.argmax())
    target = st.selectbox(
        "Class to explain (default: the predicted class)", classes, index=predicted,
        key=keys.target(model.spec.name, source.digest),
        format_func=lambda c: f"{logic.class_label(model.spec.class_names, c)} "
                              f"(p = {float(source.probabilities[c]):.3f})")
    have_ig2 = model.spec.reference_pool is not None  # IG2 needs references to draw from
    methods = ["IG", "IG2", "both"] if have_ig2 else ["IG"]
    method = st.radio("Method", methods, horizontal=True, key=keys.METHOD,
                      help="both: IG and IG2 side by side on one colour scale")
    if not have_ig2:
        st.caption("IG2 needs the core's ig2 and a model with a reference pool; "
                   "not available for this model yet.")
    kinds = list(image_io.BASELINE_KINDS)
    baseline = st.selectbox("Baseline (IG)", kinds, index=kinds.index(_default_baseline(model)),
                            key=keys.BASELINE, format_func=_baseline_label)
    uploaded_baseline = None
    if baseline == "uploaded":
        upload = upload_box("Baseline image", type=list(image_io.UPLOAD_EXTENSIONS),
                            key=keys.BASELINE_UPLOAD, limit_mb=OTHER_UPLOADS_MB)
        if upload is not None:
            try:
                uploaded_baseline = _decode_upload(upload.getvalue()).image
            except image_io.ImageInputError as error:
                st.error(f"Baseline {upload.name}: {error}")
            except Exception as error:  # MemoryError included: shown, logged, not remembered
                show_unexpected(error, f"Reading the baseline {upload.name}")
    small = source.inputs.numel() <= SMALL_INPUT_VALUES
    auto = st.checkbox("Choose the step count automatically", key=keys.AUTO_STEPS,
                       help="Refine the path until the completeness error reaches the tolerance.")
    tolerance = 0.01
    if auto:
        tolerance = st.select_slider("Tolerance (relative completeness error)",
                                     [0.001, 0.005, 0.01, 0.02, 0.05], value=0.01,
                                     key=keys.TOLERANCE)
        n_steps: int | str = "auto"
    else:
        n_steps = st.slider("Steps", 4, 1024, 300 if small else 64, step=4, key=keys.STEPS)
    with st.expander("Advanced", expanded=False):
        quadrature = st.selectbox("Quadrature", ["gausslegendre", "riemann_trapezoid",
                                                 "riemann_middle", "riemann_left",
                                                 "riemann_right"], key=keys.QUADRATURE)
        curve = st.checkbox("Compute a convergence curve at 1/8, 1/4 and 1/2 of the steps "
                            "(about 90 % more work)", value=small, key=keys.CURVE)
        seed = int(st.number_input("Seed (noise baseline, IG2 references)", 0, 10_000, 0,
                                   key=keys.SEED))
        n_refs, choice, ig2_steps, step_size, layer = _ig2_options(model, method)
    settings = logic.ImageSettings(
        method=method, target=int(target), baseline=baseline, n_steps=n_steps,  # type: ignore
        tolerance=float(tolerance), quadrature=quadrature, convergence_curve=curve,
        n_references=n_refs, reference_choice=choice, ig2_steps=ig2_steps,  # type: ignore
        ig2_step_size=step_size, representation=layer, seed=seed,
    )
    return settings, uploaded_baseline


def _ig2_options(model: LoadedModel, method: str) -> tuple[int, str, int, float, str | None]:
    # Rendered for every method: a widget that is not drawn loses its value in Streamlit, and
    # switching to IG and back must not reset the IG2 choices.
    default_layer = model.spec.representation_module
    st.markdown("**IG2**" + (" (not used by IG)" if method == "IG" else ""))
    n_refs = st.slider("References", 1, 16, 8, key=keys.IG2_REFS)
    choice = st.radio("Reference choice", ["other classes", "relevant"], horizontal=True,
                      key=keys.IG2_CHOICE,
                      help="relevant: samples of the 2nd to 4th most likely classes "
                           "(less noisy); other classes: any other class (more complete)")
    ig2_steps = st.slider("Path steps", 4, 256, 32, key=keys.IG2_STEPS)
    step_size = float(st.number_input("Step size (input units)", 1e-5, 10.0,
                                      float(model.spec.ig2_step_size), format="%.5f",
                                      key=keys.IG2_ETA))
    layers = [name for name, module in model.module.named_modules()
              if name and not list(module.children())]
    if default_layer and default_layer not in layers:
        layers.insert(0, default_layer)
    layer = st.selectbox("Representation layer (its input is used)", layers or [None],
                         index=layers.index(default_layer) if default_layer in layers else 0,
                         key=keys.IG2_LAYER) if layers else default_layer
    return n_refs, choice, ig2_steps, step_size, layer


def _baseline_label(kind: str) -> str:
    return {
        "black": "black image", "white": "white image", "blurred": "blurred input",
        "noise": "uniform noise (seeded)", "mean": "dataset mean",
        "uploaded": "an uploaded image",
    }[kind]
