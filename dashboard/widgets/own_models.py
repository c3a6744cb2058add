""""Your model" on the image page: a torchvision architecture with uploaded safetensors weights
(and optional class names), or a Hugging Face image classifier the source policy allows.

What a user loads here is theirs alone: its spec goes to this session's models
(:mod:`dashboard.widgets.session_models`), never to the process-wide registry, so other
sessions neither list it nor load it. Uploads are read only when **Load** is pressed (hashing a
few hundred MB on every rerun would stall the page), content-hashed, and checked against the
operator's model-upload limit before any parsing.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st
from streamlit.runtime.uploaded_file_manager import UploadedFile

from attribution_core.limits import (
    MAX_IMAGE_MODEL_SIDE,
    MAX_MODEL_CLASSES,
    MAX_MODEL_NAME_CHARS,
    MAX_OWN_MODELS_PER_SESSION,
    MODEL_CHECK_SECONDS,
    SMALL_UPLOADS_MB,
)
from attribution_core.models import sandbox
from attribution_core.models.sources import ModelSourceRefused
from attribution_core.models.spec import LoadedModel, ModelLoadError, ModelSpec
from attribution_core.models.uploads import (
    UPLOAD_ARCHITECTURES,
    check_model_upload_size,
    model_upload_limit_bytes,
    parse_class_names,
    torchvision_upload_spec,
)
from dashboard.widgets import keys, resources, session_models
from dashboard.widgets.errors import show_unexpected
from dashboard.widgets.upload_guard import upload_box

SIDEBAR, YOURS = "Model from the sidebar", "Your model"
TORCHVISION, HUGGING_FACE = "torchvision + .safetensors", "Hugging Face image classifier"
ONNX = "ONNX (.onnx)"
NORMALISATIONS = {"none": "pixels in [0, 1]", "imagenet": "ImageNet mean / std"}


def upload_limit_mb() -> int:
    return max(1, model_upload_limit_bytes() // 2**20)


def image_source() -> str:
    return str(st.radio("Model source", [SIDEBAR, YOURS], horizontal=True,
                        key=keys.MODEL_SOURCE["image"],
                        help="Your model: a torchvision network with your own weights, or a "
                             "Hugging Face image classifier. It stays in your session."))


def image_model_panel() -> LoadedModel | None:
    """Load the user's own image model (kept in this session) and return it, or None."""
    name = st.session_state.get(keys.OWN_IMAGE_MODEL)
    sandbox.warm_up()  # the converters' process starts now, not at the first upload
    with st.expander("Your model", expanded=name is None):
        kind = st.radio("Format", [TORCHVISION, HUGGING_FACE, ONNX], horizontal=True,
                        key=keys.OWN_IMAGE_KIND)
        if kind == TORCHVISION:
            _torchvision_form()
        elif kind == ONNX:
            _onnx_form()
        else:
            _hugging_face_form()
    name = st.session_state.get(keys.OWN_IMAGE_MODEL)
    spec = session_models.get(name) if name is not None else None
    if spec is not None:
        st.caption(f"Using **{spec.title}** (yours: other sessions do not see it).")
    if name is None or session_models.get(name) is None:
        st.info("Choose a format, give the files and press **Load this model**.")
        return None
    return resources.load_ready_model(name)


def _define(build: Callable[[], ModelSpec], what: str) -> None:
    """Build a spec; on success make it this session's image model, else say why in one line
    (the model loaded before, if any, stays)."""
    try:
        with st.spinner(f"Reading {what}…"):
            spec = build()
    except ModelSourceRefused as error:  # one message whatever the reason (sources.py)
        st.error(str(error))
        return
    except ModelLoadError as error:
        st.error(f"{what}: {error}")
        return
    except Exception as error:  # MemoryError included: one line, details in the log
        show_unexpected(error, f"Loading {what}")
        return
    session_models.define(spec)
    st.session_state[keys.OWN_IMAGE_MODEL] = spec.name
    show_evicted()


def show_evicted() -> None:
    """Say which of this session's own models the last load let go, if any."""
    gone = session_models.evicted()
    if gone:
        st.caption(f"Unloaded {', '.join(gone)}: a session keeps its "
                   f"{MAX_OWN_MODELS_PER_SESSION} most recently used own models.")


def _class_names_box(key: str) -> UploadedFile | None:
    return upload_box(f"Class names (optional): a .json list, or a .txt with one name per line "
                      f"(at most {MAX_MODEL_CLASSES:,} names of {MAX_MODEL_NAME_CHARS} "
                      "characters)", type=["json", "txt"], key=key, limit_mb=SMALL_UPLOADS_MB)


def _torchvision_form() -> None:
    limit = upload_limit_mb()
    architecture = st.selectbox("Architecture", list(UPLOAD_ARCHITECTURES),
                                key=keys.OWN_IMAGE_ARCHITECTURE,
                                help="The head size (number of classes) is read from the "
                                     "weights.")
    weights = upload_box(
        f"Weights: a state dict saved with safetensors (up to {limit} MB)",
        type=["safetensors"], key=keys.OWN_IMAGE_WEIGHTS, limit_mb=limit,
        help="safetensors.torch.save_file(model.state_dict(), 'model.safetensors'). Pickled "
             "checkpoints (.pt, .pth) are refused: loading them can run code.")
    classes = _class_names_box(keys.OWN_IMAGE_CLASSES)
    if st.button("Load this model", key=keys.OWN_IMAGE_LOAD, disabled=weights is None):
        assert weights is not None  # the button is disabled otherwise

        def build() -> ModelSpec:
            check_model_upload_size(weights.size, weights.name)
            names = parse_class_names(classes.getvalue(), classes.name) if classes else None
            return torchvision_upload_spec(weights.getvalue(), architecture, names,
                                           weights.name)

        _define(build, weights.name)


def _hugging_face_form() -> None:
    typed = st.text_input("Hub id or folder", key=keys.OWN_IMAGE_HF_SOURCE,
                          placeholder="google/vit-base-patch16-224",
                          help="A hub id already in the server's Hugging Face cache, or a "
                               "folder under the model folders the operator shared; loaded "
                               "with trust_remote_code=False.")
    if st.button("Load this model", key=keys.OWN_IMAGE_HF_LOAD, disabled=not typed.strip()):
        from attribution_core.models.hf_images import hugging_face_image_spec

        _define(lambda: hugging_face_image_spec(typed.strip()), typed.strip())


def _onnx_form() -> None:
    from attribution_core.models.onnx_models import onnx_image_spec, onnx_support_problem

    problem = onnx_support_problem()
    if problem is not None:
        st.warning(problem)
    limit = upload_limit_mb()
    model_file = upload_box(f"ONNX image classifier (up to {limit} MB)", type=["onnx"],
                            key=keys.OWN_IMAGE_ONNX, limit_mb=limit,
                            help="Input [batch, channels, height, width] (at most "
                                 f"{MAX_IMAGE_MODEL_SIDE:,} pixels a side); the graph is "
                                 "converted to PyTorch with onnx2torch after a trial run in a "
                                 f"separate process (at most {MODEL_CHECK_SECONDS:g} s).")
    normalisation = st.radio("The model expects", list(NORMALISATIONS), horizontal=True,
                             key=keys.OWN_IMAGE_ONNX_NORM, format_func=NORMALISATIONS.get)
    classes = _class_names_box(keys.OWN_IMAGE_ONNX_CLASSES)
    if st.button("Load this model", key=keys.OWN_IMAGE_ONNX_LOAD,
                 disabled=model_file is None or problem is not None):
        assert model_file is not None  # the button is disabled otherwise

        def build() -> ModelSpec:
            check_model_upload_size(model_file.size, model_file.name)
            names = parse_class_names(classes.getvalue(), classes.name) if classes else None
            return onnx_image_spec(model_file.getvalue(), model_file.name, names,
                                   str(normalisation))

        _define(build, model_file.name)
