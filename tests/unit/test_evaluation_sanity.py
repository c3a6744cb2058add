"""The model-randomisation sanity check as the Evaluate page runs it."""

from __future__ import annotations

import pytest
import torch

from attribution_core.cache import ResultCache
from attribution_core.evaluation.runner import evaluate
from attribution_core.evaluation.sanity import PASS_THRESHOLD, randomisation_sanity
from attribution_core.evaluation.types import (
    METHOD_IG,
    METHOD_IG2,
    EvaluationInputError,
    EvaluationSettings,
)
from tests.unit.models_for_tests import mlp
from tests.unit.test_evaluation_runner import loaded_for, random_cases

pytestmark = pytest.mark.usefixtures("float64_default")


def test_ig_and_ig2_maps_change_when_the_layers_are_reinitialised() -> None:
    model = mlp(seed=5)
    before = [p.detach().clone() for p in model.parameters()]
    loaded = loaded_for(model, 3)
    settings = EvaluationSettings(ig_steps=16, ig2_steps=16, ig2_references=2)
    cache = ResultCache()
    trained = evaluate(loaded, random_cases(6), settings, cache=cache)
    check = randomisation_sanity(loaded, random_cases(6), settings, n_cases=6)
    assert check.layers == ("4", "2", "0"), f"output layer first: {check.layers}"
    assert check.n_cases == 6, "every case of the batch was used"
    for method in (METHOD_IG, METHOD_IG2):
        values = check.correlations[method]
        assert len(values) == 4, f"{method}: trained + one value per layer: {values}"
        assert values[0] == pytest.approx(1.0), f"{method}: trained vs trained is 1"
        assert check.final(method) < PASS_THRESHOLD and check.passed(method), \
            f"{method}: the maps of a re-initialised MLP are unlike the trained ones: {values}"
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True)), \
        "the trained model is never changed"
    again = evaluate(loaded, random_cases(6), settings, cache=cache)
    for a, b in zip(trained.cases, again.cases, strict=True):
        assert a.outcome(METHOD_IG).deletion_auc == b.outcome(METHOD_IG).deletion_auc, \
            "the randomised models left the trained model's cached results alone"


def test_a_wrapped_forward_is_refused_clearly() -> None:
    import dataclasses

    loaded = loaded_for(mlp(), 3)
    wrapped = dataclasses.replace(loaded, forward=lambda x: loaded.module(x))
    with pytest.raises(EvaluationInputError, match="wrapper"):
        randomisation_sanity(wrapped, random_cases(2))
