"""The out-of-domain notice: held-out reference inputs pass, a colour photo on the digits model
and a row ten times out of range are called far, in words; models without references get none."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from attribution_core.models import load_model, register_model, unregister_spec
from attribution_core.models.domain import check_input
from tests.app import image_files as files

MODELS = ("digits_cnn", "shapes_cnn", "breast_cancer_mlp", "wine_mlp", "diabetes_mlp")


@pytest.mark.parametrize("name", MODELS)
def test_reference_inputs_are_not_called_far(name: str) -> None:
    loaded = load_model(name, device="cpu")
    pool = loaded.spec.reference_pool().inputs[:120]  # bounded time; the profile uses all
    flagged = sum(bool(check_input(loaded, pool[i:i + 1]).far) for i in range(pool.shape[0]))
    assert flagged <= 0.01 * pool.shape[0], \
        f"{name}: {flagged} of {pool.shape[0]} held-out reference inputs called far"


@pytest.mark.parametrize("name", ["digits_cnn", "shapes_cnn"])
def test_a_colour_photo_is_called_far_in_words(name: str) -> None:
    loaded = load_model(name, device="cpu")
    photo = loaded.preprocess(files.gradient_image(160, 120))
    check = check_input(loaded, photo)
    assert check is not None and check.far, f"{name}: a colour photo is far: {check}"
    assert check.message is not None and "unlike the data" in check.message and \
        "standard deviations" in check.message, f"said in words: {check.message}"
    samples = [loaded.preprocess(s.value) for s in loaded.spec.samples()]
    assert not any(check_input(loaded, s).far for s in samples), "bundled samples pass"


@pytest.mark.parametrize("name", ["breast_cancer_mlp", "wine_mlp", "diabetes_mlp"])
def test_a_row_far_out_of_range_is_called_far_in_raw_units(name: str) -> None:
    loaded = load_model(name, device="cpu")
    raw = np.asarray(loaded.spec.reference_pool().extras["raw"])
    check = check_input(loaded, loaded.preprocess(raw[0] * 10))
    assert check is not None and check.far and check.message, f"{name}: x10 row: {check}"
    middle = check_input(loaded, loaded.preprocess(np.median(raw, axis=0)))
    assert middle is not None and not middle.far, f"{name}: the median row is typical"


def test_a_model_without_references_gets_no_check() -> None:
    spec = register_model("no_reference_plugin", nn.Linear(2, 2), "tabular",
                          feature_names=["a", "b"])
    try:
        loaded = load_model(spec.name, device="cpu")
        assert check_input(loaded, torch.tensor([[1e6, -1e6]])) is None, "nothing to compare"
    finally:
        unregister_spec(spec.name)
