"""The shared sidebar: device in use, the model picker for the page's modality, short help."""

from __future__ import annotations

import streamlit as st

from dashboard.widgets import catalog, keys, progressive, resources

HELP = {
    None: (
        "Each page explains one kind of model. **Integrated Gradients (IG)** credits every input "
        "feature with part of the change in the model's score between a *baseline* and your "
        "input. **IG2** measures against a *counterfactual* found by walking towards real "
        "samples of other classes. The **completeness error** says how far the credits' sum is "
        "from the score change they claim to explain: small means trustworthy arithmetic."
    ),
    "image": (
        "**Red** pixels pushed the score of the chosen class **up**, **blue** pixels pushed it "
        "**down** (signed view). IG and IG2 maps share one colour scale, so a paler map really is "
        "weaker. The gauge shows the completeness error: green < 1 %, amber < 5 %, red above. "
        "The baseline is what 'absence' means: check that the model is not confident about it."
    ),
    "text": (
        "Each token (and each word, the sum of its tokens) is coloured by how much it moved the "
        "chosen class's score: **red** up, **blue** down. Attributions are taken over the token "
        "embeddings; the [PAD] baseline replaces every ordinary token and keeps [CLS] / [SEP]. "
        "A large share on special tokens means the model reads position, not words."
    ),
    "tabular": (
        "Bars give each feature's share of f(x) - f(baseline) in the model's output units; the "
        "waterfall walks from the baseline's score to the row's. The baseline (training mean by "
        "default) is the 'typical' row the explanation compares against: a different baseline "
        "asks a different question and gives different bars."
    ),
    "evaluate": (
        "Runs every method on many cases. **Deletion** removes the units a map ranks highest "
        "first: a faithful map makes the score fall fast (low area). **Insertion** adds them "
        "to the baseline: the score should rise fast (high area). Both are normalised so that "
        "f(baseline) = 0 and f(x) = 1 and compared with random orders. Removing units by the "
        "attribution baseline favours IG, which integrates from it: try another removal value "
        "before concluding that one method is more faithful."
    ),
}


def selected_model_key(modality: str) -> str:
    """Session-state key holding the model chosen for ``modality`` (read by the pages)."""
    return keys.selected_model(modality)


def render_sidebar(modality: str | None, topic: str | None = None) -> None:
    """Device, the model picker for ``modality`` (if any) and the help of ``topic`` (a page's
    url path; the modality's help, else the general one, when it has none)."""
    with st.sidebar:
        st.caption(f"Computing on **{resources.device_label()}**")
        if modality is not None and _own_model_in_use(modality):
            st.info("This page explains **your own model** (Model source on the page); "
                    "the built-in models are under *Model from the sidebar*.")
        elif modality is not None:
            _model_picker(modality)
            progressive.preview_toggle()
        with st.expander("What am I looking at?", expanded=False):
            st.markdown(HELP.get(topic) or HELP.get(modality) or HELP[None])




def _own_model_in_use(modality: str) -> bool:
    """Whether the page's "Model source" radio is on "Your model" (its value from the last
    interaction: the sidebar is drawn before the page)."""
    key = keys.MODEL_SOURCE.get(modality)
    return key is not None and st.session_state.get(key) == "Your model"


def _model_picker(modality: str) -> None:
    entries = catalog.list_entries(modality)
    store = selected_model_key(modality)
    if not entries:
        problem = catalog.registry_problem()
        st.warning(problem or f"No {modality} model is registered.")
        st.session_state[store] = None
        return
    names = [entry.spec.name for entry in entries]
    by_name = {entry.spec.name: entry for entry in entries}
    remembered = st.session_state.get(store)
    if remembered not in by_name:
        ready = [entry.spec.name for entry in entries if entry.status.ready]
        remembered = ready[0] if ready else names[0]
    chosen = st.selectbox(
        "Model", names, index=names.index(remembered), key=keys.sidebar_model(modality),
        format_func=lambda name: by_name[name].spec.title
        + ("" if by_name[name].status.ready else " (not ready)"),
    )
    st.session_state[store] = chosen
    status = by_name[chosen].status
    shown = catalog.public_status(status)  # the operator's details are in the server log
    if status.ready:
        st.success(f"Status: {shown}", icon=":material/check_circle:")
    else:
        st.error(f"Status: {shown}", icon=":material/block:")
    description = by_name[chosen].spec.description
    if description:
        st.caption(description)
