"""Evaluate page, inputs: modality, model, the cases (bundled or uploaded), methods, settings.

Building cases costs model calls, so each case set is built once per session and remembered
under what it was built from (model, weights, source bytes or count, baseline, seed). A bad
upload is reported with ``st.error`` / ``st.warning`` and gives no cases; the other inputs and
the last result stay on screen.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import streamlit as st

from attribution_core.evaluation import (
    ALL_METHODS,
    KNOWN_METHODS,
    METHOD_IG2_BEST_PATH,
    EvalCase,
    EvaluationInputError,
    EvaluationSettings,
)
from attribution_core.evaluation.case_pool import has_reference_data, with_case_pool
from attribution_core.evaluation.cases import (
    CaseBuild,
    bundled_cases,
    image_cases,
    tabular_cases,
    text_cases,
)
from attribution_core.evaluation.uploads import read_image_zip, read_rows_csv, read_text_csv
from attribution_core.limits import (
    EVALUATE_MAX_TOTAL_PIXELS,
    MAX_COLUMN_NAME_CHARS,
    MAX_CSV_COLUMNS,
    MAX_FRAMES_COUNTED,
    MAX_KEPT_SIDE,
    MAX_ZIP_ENTRIES,
    MAX_ZIP_NAME_CHARS,
    OTHER_UPLOADS_MB,
)
from attribution_core.models.encoded_tabular import schema_of
from attribution_core.models.inputs import feature_names
from attribution_core.models.spec import LoadedModel
from dashboard.evaluate import keys
from dashboard.evaluate.state import cases_digest, result_key
from dashboard.widgets import catalog, resources, session_models
from dashboard.widgets.errors import unexpected_message
from dashboard.widgets.upload_guard import upload_box

MODALITIES = ("image", "text", "tabular")
BUNDLED, UPLOAD = "Bundled cases", "Upload"
OWN_REFERENCE = "Your reference data"
YOURS = " · yours, this session"
DEFAULT_CASES = 50
MAX_CASES = 500
CASE_MEMO_ITEMS = 4
MAX_SKIPPED_SHOWN = 12
UPLOAD_TYPES = {"image": ["zip"], "text": ["csv"], "tabular": ["csv"]}
UPLOAD_NOTES = {
    "image": "A **zip** of pictures (PNG, JPEG, WebP, BMP, TIFF, GIF). An optional mask "
             "`<stem>_mask.png` (or `masks/<stem>.png`) marks what should matter: pixels "
             "brighter than 127 are expected. An optional `labels.csv` with columns "
             "`file,label` gives the true classes. Files that are not pictures are skipped "
             "with a warning.",
    "text": "A **CSV** with a `text` column (or a single column of texts); optional columns "
            "`expected` (the words that should matter, separated by `;`, `|` or `,`), "
            "`label` (class index) and `name`. One case per row; quote texts with commas.",
    "tabular": "A **CSV** with one column per model feature (raw units, the model's feature "
               "names); optional columns `expected` (feature names that should matter, "
               "separated by `;` or `|`), `label` and `name`. One case per row.",
}

UPLOAD_LIMITS = {
    "image": f"At most {MAX_ZIP_ENTRIES:,} files and folders in the zip, paths up to "
             f"{MAX_ZIP_NAME_CHARS} characters, {EVALUATE_MAX_TOTAL_PIXELS / 1e6:,.0f} "
             f"megapixels in all (pictures are first reduced to {MAX_KEPT_SIDE} pixels a "
             f"side); only the first of up to {MAX_FRAMES_COUNTED} frames is read.",
    "text": f"At most {MAX_CASES} rows, {MAX_CSV_COLUMNS:,} columns, names up to "
            f"{MAX_COLUMN_NAME_CHARS} characters, each name once.",
    "tabular": f"At most {MAX_CASES} rows, {MAX_CSV_COLUMNS:,} columns, names up to "
               f"{MAX_COLUMN_NAME_CHARS} characters, each name once.",
}


@dataclass(frozen=True)
class EvaluationRequest:
    """Everything one evaluation needs, and the key its result is stored under."""

    model: LoadedModel
    cases: tuple[EvalCase, ...]
    settings: EvaluationSettings
    key: str
    source: str
    own_model: bool = False  # defined in this session: audited here, never sent elsewhere


def _is_own(name: str) -> bool:
    return session_models.get(name) is not None


def _model_names(modality: str) -> tuple[list[str], dict[str, str]]:
    """Ready built-in and plugin models, then this session's own (uploaded on the image, text
    or tabular page, or a label set typed there), labelled as the user's."""
    entries = [e for e in catalog.list_entries(modality) if e.status.ready and (
        e.spec.source in ("builtin", "plugin") or _is_own(e.spec.name))]
    return [e.spec.name for e in entries], {
        e.spec.name: e.spec.title + (YOURS if _is_own(e.spec.name) else "") for e in entries}


def model_panel() -> LoadedModel | None:
    """Modality, then one of that modality's ready built-in (or operator plugin) models or
    one of this session's own."""
    modality = st.radio("Modality", MODALITIES, horizontal=True, key=keys.MODALITY,
                        format_func=str.capitalize)
    names, titles = _model_names(modality)
    if not names:
        st.warning(catalog.registry_problem() or f"No ready built-in {modality} model.")
        return None
    name = st.selectbox("Model", names, key=keys.model(modality), format_func=titles.get)
    return resources.load_ready_model(name)


def _memo() -> OrderedDict[tuple[Any, ...], Any]:
    return st.session_state.setdefault(keys.CASE_MEMO, OrderedDict())


def _remembered(key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
    """``build()`` once per key; a failure is remembered as its message (shown as an error)."""
    memo = _memo()
    if key not in memo:
        try:
            memo[key] = build()
        except EvaluationInputError as error:
            memo[key] = str(error)
        except MemoryError as error:  # may pass once others free memory: never remembered
            return unexpected_message(error, "Building the cases")
        except Exception as error:  # logged with a reference; the page shows one line
            memo[key] = unexpected_message(error, "Building the cases")
        while len(memo) > CASE_MEMO_ITEMS:
            memo.popitem(last=False)
    memo.move_to_end(key)
    return memo[key]


def cases_panel(model: LoadedModel, baseline: str, seed: int, removal: str | None = None
                ) -> tuple[tuple[EvalCase, ...], str] | None:
    """Bundled cases (how many) or an upload; the cases and a one-line description of them.
    A model of this session offers its reference data (when it came with some) instead."""
    spec = model.spec
    if _is_own(spec.name):
        options = [OWN_REFERENCE, UPLOAD] if has_reference_data(model.spec) else [UPLOAD]
        source = st.radio("Cases", options, horizontal=True, key=keys.SOURCE_OWN,
                          help="Your reference data: the rows or texts you gave with the "
                               "model. Upload: a file of cases; a model without reference "
                               "data draws IG2's references from the uploaded cases.")
    else:
        source = st.radio("Cases", [BUNDLED, UPLOAD], horizontal=True, key=keys.SOURCE)
    if source == OWN_REFERENCE:
        count = int(st.number_input("Number of cases", 1, MAX_CASES, DEFAULT_CASES, step=5,
                                    key=keys.N_OWN_CASES,
                                    help="Rows or texts of your reference data, classes "
                                         "taken in turn."))
        built = _remembered(
            ("own", spec.name, model.weights_hash, count, baseline, seed, removal),
            lambda: bundled_cases(model, count, baseline=baseline, seed=seed, removal=removal))
        return _report(built, "your reference data")
    if source == BUNDLED:
        count = int(st.number_input("Number of cases", 1, MAX_CASES, DEFAULT_CASES, step=5,
                                    key=keys.N_CASES,
                                    help="Held-out samples, classes taken in turn."))
        built = _remembered(
            ("bundled", spec.name, model.weights_hash, count, baseline, seed, removal),
            lambda: bundled_cases(model, count, baseline=baseline, seed=seed, removal=removal))
        found = _report(built, f"bundled {spec.modality} cases")
        if found is not None and len(found[0]) < count:
            st.info(f"The bundled set of {spec.title} holds {len(found[0])} cases; all of "
                    f"them are used (asked for {count}).")
        return found
    return _upload(model, baseline, seed, removal)


def _upload(model: LoadedModel, baseline: str, seed: int, removal: str | None
            ) -> tuple[tuple[EvalCase, ...], str] | None:
    modality = model.spec.modality
    st.caption(UPLOAD_NOTES[modality])
    if _is_own(model.spec.name) and not has_reference_data(model.spec):
        st.caption("Your model came without reference data: IG2 and GradientSHAP draw their "
                   "references from the other cases of this file, labelled by the model's "
                   "own predictions.")
    upload = upload_box("Cases file", type=UPLOAD_TYPES[modality],
                        key=keys.upload(modality), help=UPLOAD_LIMITS[modality],
                        limit_mb=OTHER_UPLOADS_MB)
    if upload is None:
        st.info("Upload a file of cases, or choose the bundled cases.")
        return None
    data = upload.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    built = _remembered(
        ("upload", model.spec.name, model.weights_hash, digest, baseline, seed, removal),
        lambda: _read_upload(model, data, baseline, seed, removal))
    return _report(built, f"{upload.name}", prefix=f"{upload.name}: ")


def _read_upload(model: LoadedModel, data: bytes, baseline: str, seed: int,
                 removal: str | None) -> tuple[CaseBuild, tuple[str, ...]]:
    """Read the file and build its cases; the file's own skipped items come first."""
    modality = model.spec.modality
    problems: tuple[str, ...] = ()
    if modality == "image":
        images = read_image_zip(data)
        build = image_cases(with_case_pool(model, images.items), images.items,
                            baseline=baseline, seed=seed, removal=removal)
        file_skipped = images.skipped
    elif modality == "text":
        texts = read_text_csv(data)
        build = text_cases(with_case_pool(model, texts.items), texts.items, baseline=baseline,
                           seed=seed, removal=removal)
        file_skipped = texts.skipped
    else:
        rows = read_rows_csv(data, feature_names(model), schema=schema_of(model))
        problems = tuple(rows.problems)
        build = tabular_cases(with_case_pool(model, rows.items), rows.items, baseline=baseline,
                              seed=seed, removal=removal)
        file_skipped = rows.skipped
    return CaseBuild(build.cases, tuple(file_skipped) + tuple(build.skipped)), problems


def _report(built: Any, label: str, prefix: str = "") -> tuple[tuple[EvalCase, ...], str] | None:
    """Show what went wrong with a case set; return its cases when there are any."""
    if isinstance(built, str):
        st.error(prefix + built)
        return None
    problems: Sequence[str] = ()
    if isinstance(built, tuple):
        built, problems = built
    for problem in problems:
        st.error(prefix + problem)
    if built.skipped:
        shown = list(built.skipped[:MAX_SKIPPED_SHOWN])
        more = len(built.skipped) - len(shown)
        st.warning(f"{prefix}{len(built.skipped)} item(s) skipped or changed:\n\n"
                   + "\n".join(f"- {line}" for line in shown)
                   + (f"\n- … and {more} more" if more > 0 else ""))
    if not built.cases:
        st.error(f"{prefix}no case could be built, so there is nothing to evaluate.")
        return None
    with_expectations = sum(case.expected is not None for case in built.cases)
    st.caption(f"{len(built.cases)} cases ready ({label}); {with_expectations} with expected "
               "features.")
    return tuple(built.cases), label


SAME_AS_BASELINE = "same as the baseline"


def baseline_choice(model: LoadedModel) -> tuple[str, str | None]:
    """The attribution baseline, and what the curves put in place of removed units (None: the
    baseline itself; another kind compares IG and IG2 on ground that is neither's baseline)."""
    spec = model.spec
    kinds = list(spec.baselines) or [spec.default_baseline]
    default = kinds.index(spec.default_baseline) if spec.default_baseline in kinds else 0
    baseline = str(st.selectbox("Baseline", kinds, index=default,
                                key=keys.baseline(spec.name),
                                help="What 'absent' means for IG (and, by default, for the "
                                     "deletion and insertion curves)."))
    others = [SAME_AS_BASELINE] + [kind for kind in kinds if kind != baseline]
    removal = st.selectbox("Removed units become", others, key=keys.removal(spec.name),
                           help="What deletion and insertion put in place of a removed unit. "
                                "The baseline favours methods that integrate from it (IG); "
                                "another value is neutral ground.")
    return baseline, None if removal == SAME_AS_BASELINE else str(removal)


def settings_panel() -> tuple[EvaluationSettings, int]:
    """Methods (all by default) and the run's parameters; the seed is returned separately too."""
    methods = st.multiselect("Methods", list(KNOWN_METHODS), default=list(ALL_METHODS),
                             key=keys.METHODS,
                             help=f"{METHOD_IG2_BEST_PATH}: IG2 run with a few path settings "
                                  "(eta, steps) per case, keeping the one whose paths got "
                                  "closest to their references (about 5x IG2's cost).")
    defaults = EvaluationSettings()
    with st.expander("Settings", expanded=False):
        left, right = st.columns(2)
        ig_steps = left.slider("IG steps", 4, 256, defaults.ig_steps, step=4,
                               key=keys.IG_STEPS)
        ig2_steps = left.slider("IG2 path steps", 4, 128, defaults.ig2_steps, step=4,
                                key=keys.IG2_STEPS)
        ig2_refs = left.slider("IG2 references", 1, 8, defaults.ig2_references,
                               key=keys.IG2_REFS)
        samples = right.slider("SmoothGrad samples", 2, 64, defaults.smoothgrad_samples,
                               key=keys.SG_SAMPLES)
        points = right.slider("Curve points (deletion / insertion)", 5, 51,
                              defaults.curve_points, step=2, key=keys.CURVE_POINTS)
        seed = int(right.number_input("Seed", 0, 10_000, defaults.seed, key=keys.SEED))
    ordered = tuple(m for m in KNOWN_METHODS if m in methods)
    settings = EvaluationSettings(methods=ordered, ig_steps=ig_steps, ig2_steps=ig2_steps,
                                  ig2_references=ig2_refs, smoothgrad_samples=samples,
                                  curve_points=points, seed=seed)
    return settings, seed


def request_panel() -> EvaluationRequest | None:
    """The whole input area in two columns; None until the inputs make a runnable request."""
    left, right = st.columns(2, gap="large")
    with left:
        st.subheader("Model and cases")
        model = model_panel()
    with right:
        st.subheader("Methods and settings")
        settings, seed = settings_panel()
        choice = baseline_choice(model) if model is not None else None
    if model is None or choice is None:
        return None
    baseline, removal = choice
    settings = replace(settings, removal=removal)
    with left:
        found = cases_panel(model, baseline, seed, removal)
    if not settings.methods:
        with right:
            st.warning("Choose at least one method.")
        return None
    if found is None:
        return None
    cases, label = found
    key = result_key(model.spec.name, model.weights_hash, cases_digest(cases), settings)
    return EvaluationRequest(model, cases, settings, key, label, _is_own(model.spec.name))
