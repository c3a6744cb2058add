"""Bad arguments get the same one-line messages as before the checks moved into validation.py,
and the checks that replaced metrics' own copy (``_check_pair``) are validation's."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from attribution_core import validation
from attribution_core.methods.gradient_shap import gradient_shap
from attribution_core.methods.ig import integrated_gradients
from attribution_core.methods.ig2 import ig2
from attribution_core.methods.smoothgrad import smoothgrad
from attribution_core.metrics import deletion_curve, infidelity, sensitivity_n
from attribution_core.references import select_references

MODEL = nn.Linear(3, 2).double()
X = torch.zeros(2, 3, dtype=torch.float64)


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda: integrated_gradients(MODEL, X, target=0, n_steps="auto", tolerance=1.5),
     ValueError, "tolerance must be in (0, 1), got 1.5."),
    (lambda: integrated_gradients(MODEL, X, target=0, n_steps=2.5),
     TypeError, "n_steps must be an int or 'auto', got 2.5."),
    (lambda: integrated_gradients(MODEL, X, target=0, method="simpson"),
     ValueError, "Unknown method 'simpson'; choose one of "),
    (lambda: integrated_gradients(MODEL, X, baselines=torch.zeros(4), target=0),
     ValueError, "baselines of shape (4,) do not broadcast to inputs of shape (2, 3)."),
    (lambda: integrated_gradients(MODEL, X, target=[0, 1, 0]),
     ValueError, "target has 3 entries for 2 inputs."),
    (lambda: integrated_gradients(MODEL, X, target=5),
     ValueError, "target 5 is out of range: the model has 2 outputs (valid targets are 0 to 1)."),
    (lambda: ig2(MODEL, X, torch.zeros(4, 5, dtype=torch.float64), target=0),
     ValueError, "references of shape (4, 5) do not match inputs of shape (2, 3): "
                 "use [B, ...] or [N, B, ...]."),
    (lambda: ig2(MODEL, X, torch.zeros(4, 3, dtype=torch.float64), target=0, norm="l3"),
     ValueError, "Unknown norm 'l3'; choose one of "),
    (lambda: ig2(MODEL, X, torch.zeros(4, 3, dtype=torch.float64), target=0, step_size=-1.0),
     ValueError, "step_size must be positive, got -1.0."),
    (lambda: smoothgrad(MODEL, X, target=0, stdev=-0.1),
     ValueError, "stdev must be a non-negative number, got -0.1."),
    (lambda: gradient_shap(MODEL, X, torch.zeros(4, 3, dtype=torch.float64), target=0, seed=1.5),
     TypeError, "seed must be an int, got 1.5."),
    (lambda: deletion_curve(MODEL, X, torch.zeros(2, 4), target=0),
     ValueError, "attributions (2, 4) must have the inputs' shape (2, 3)."),
    (lambda: deletion_curve(MODEL, X, torch.zeros(2, 3), target=0, n_points=1),
     ValueError, "n_points must be an int >= 2, got 1."),
    (lambda: sensitivity_n(MODEL, X, torch.zeros(2, 3), target=0, ns=(4,)),
     ValueError, "ns must hold subset sizes in 1..3, got (4,)."),
    (lambda: infidelity(MODEL, X, torch.zeros(2, 3), target=0, noise_std=0.0),
     ValueError, "noise_std must be positive, got 0.0."),
    (lambda: select_references(X, [0, 1], 0, 2, strategy="near"),
     ValueError, "Unknown strategy 'near'; choose one of other, relevant."),
])
def test_bad_arguments_keep_their_messages(call, error, message) -> None:
    with pytest.raises(error) as caught:
        call()
    assert str(caught.value).startswith(message), \
        f"expected a message starting {message!r}, got {str(caught.value)!r}"


def test_metrics_inputs_are_checked_by_the_one_contract() -> None:
    """metrics once re-implemented the inputs check with its own wording; now it is validation's."""
    for bad in (X.long(), [[0.0, 0.0, 0.0]], torch.zeros(0, 3)):
        with pytest.raises((TypeError, ValueError)) as from_validation:
            validation.check_inputs(bad)
        with pytest.raises(type(from_validation.value)) as from_metrics:
            deletion_curve(MODEL, bad, torch.zeros(2, 3), target=0)
        assert str(from_metrics.value) == str(from_validation.value), \
            f"deletion_curve must word {bad!r} exactly as validation.check_inputs does"
    assert re.search(r"leading batch dimension", str(from_validation.value)) is None, \
        "the empty batch has its own message"
