"""Building evaluation cases from the bundled models' held-out sets and from uploaded items."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from attribution_core.evaluation.cases import (
    bundled_cases,
    expected_area_share,
    image_cases,
    tabular_cases,
    text_cases,
)
from attribution_core.evaluation.types import (
    EvaluationInputError,
    ImageItem,
    RowItem,
    TextItem,
)
from attribution_core.models import get_spec, load_model


@pytest.fixture(scope="module")
def digits():
    return load_model("digits_cnn", device="cpu")


@pytest.fixture(scope="module")
def cue():
    return load_model("cue_transformer", device="cpu")


@pytest.fixture(scope="module")
def wine():
    return load_model("wine_mlp", device="cpu")


def test_bundled_digits_take_every_class_in_turn(digits) -> None:
    build = bundled_cases(digits, 50)
    labels = [c.label for c in build.cases]
    assert len(build.cases) == 50, f"50 cases asked, {len(build.cases)} built"
    assert sorted(np.bincount(labels).tolist()) == [5] * 10, \
        f"5 cases of each digit expected, got counts {np.bincount(labels).tolist()}"
    case = build.cases[0]
    assert case.inputs.shape == (1, 1, 8, 8) and case.baseline.shape == (1, 1, 8, 8), \
        "one [1, C, H, W] input and baseline per case"
    assert case.units is not None and int(case.units.max()) + 1 == 64, \
        "an 8 x 8 image is cut into 64 deletion units"
    refs_labels = get_spec("digits_cnn").reference_pool().labels
    assert case.references.shape[0] == 8, "8 references per case by default"
    pool = get_spec("digits_cnn").reference_pool()
    for ref in case.references:
        index = int(((pool.inputs - ref).flatten(1).abs().sum(1) == 0).nonzero()[0])
        assert int(refs_labels[index]) != case.target, "references are of other classes"
    assert case.display.shape == (8, 8, 3) and case.display.dtype == np.uint8, \
        "images carry an H x W x 3 picture for the report"


def test_bundled_shapes_carry_their_masks() -> None:
    loaded = load_model("shapes_cnn", device="cpu")
    build = bundled_cases(loaded, 8)
    assert all(c.expected is not None and c.expected.shape == (32, 32) for c in build.cases), \
        "every shapes case has its [32, 32] object mask"
    assert build.cases[0].units is not None and int(build.cases[0].units.max()) + 1 == 64, \
        "32 x 32 is cut into 64 patches of 4 x 4"
    share = expected_area_share(build.cases)
    assert 0.01 < share < 0.3, f"the object covers a small share of the scene, got {share}"


def test_text_expected_words_mark_their_tokens_and_missing_words_are_noted(cue) -> None:
    items = [TextItem("good", "our hotel was great .", ("great",), 1),
             TextItem("absent", "our hotel was great .", ("terrible",), 1),
             TextItem("empty", "   ")]
    build = text_cases(cue, items)
    assert [c.case_id for c in build.cases] == ["good", "absent"], "the empty text is skipped"
    marked = [tok for tok, flag in zip(build.cases[0].unit_names, build.cases[0].expected,
                                       strict=True) if flag]
    assert marked == ["great"], f"only the token of 'great' is expected, got {marked}"
    assert build.cases[1].expected is None, "no expected word occurs: no expectation"
    assert any("terrible" in note for note in build.skipped), f"notes: {build.skipped}"
    assert any(note.startswith("empty") for note in build.skipped), f"notes: {build.skipped}"
    case = build.cases[0]
    assert case.references.shape[1:] == case.inputs.shape[1:], \
        "reference sentences are cut or padded to the case's token count"
    assert case.reference_kwargs["attention_mask"].shape == case.references.shape[:2], \
        "each reference has its own attention mask"


def test_tabular_expected_features_and_unknown_names(wine) -> None:
    names = wine.extras.get("feature_names") or wine.spec.metadata["feature_names"]
    row = dict(zip(names, get_spec("wine_mlp").reference_pool().extras["raw"][0].tolist(),
                   strict=True))
    build = tabular_cases(wine, [RowItem("r", row, (names[0], names[3]))])
    assert build.cases[0].expected.tolist() == [i in (0, 3) for i in range(len(names))], \
        "expected features become a mask in the model's feature order"
    with pytest.raises(EvaluationInputError, match="not features of"):
        tabular_cases(wine, [RowItem("bad", row, ("colour of the label",))])
    missing = dict(row)
    missing.pop(names[1])
    build = tabular_cases(wine, [RowItem("short", missing)])
    assert not build.cases and names[1] in build.skipped[0], f"notes: {build.skipped}"


def test_uploaded_image_masks_are_resized_with_the_picture(digits) -> None:
    picture = Image.new("RGB", (32, 32), "black")
    mask = np.zeros((32, 32), dtype=bool)
    mask[:16, :16] = True
    build = image_cases(digits, [ImageItem("quarter", picture, mask),
                                 ImageItem("tiny", picture, np.zeros((32, 32), dtype=bool))])
    assert build.cases[0].expected is not None and int(build.cases[0].expected.sum()) == 16, \
        "a 16 x 16 corner of 32 x 32 is a 4 x 4 corner at 8 x 8"
    assert build.cases[1].expected is None and "empty" in build.skipped[0], \
        f"an empty mask is noted: {build.skipped}"


def test_bad_requests_are_refused(digits) -> None:
    with pytest.raises(EvaluationInputError, match="positive whole number"):
        bundled_cases(digits, 0)
    with pytest.raises(EvaluationInputError, match="not a text model"):
        text_cases(digits, [TextItem("t", "hello")])
    assert torch.equal(bundled_cases(digits, 3).cases[0].inputs,
                       bundled_cases(digits, 3).cases[0].inputs), "bundled cases are stable"
