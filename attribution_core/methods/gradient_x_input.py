"""Gradient x input (Shrikumar et al., 2016): the input times the gradient at the input.

Same maths as Captum's ``InputXGradient`` (tested against it), evaluated through the core's
engine. It equals IG from the zero baseline when the model is linear, which is why the result
records zeros as its baseline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from attribution_core.engine import ProgressFn
from attribution_core.forward import ForwardFn
from attribution_core.methods._gradients import (
    TargetLike,
    plain_gradient_attribution,
)
from attribution_core.results import Attribution
from attribution_core.validation import check_batch_size, check_inputs


def gradient_x_input(
    forward: ForwardFn,
    inputs: torch.Tensor,
    target: TargetLike = None,
    batch_size: int | None = None,
    progress: ProgressFn | None = None,
    *,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Attribution:
    """x * d f_target / d x for every explicand.

    ``baselines`` holds zeros and ``delta`` is ``sum(attr) - (f(x) - f(0))``: zero for a linear
    model without bias, otherwise a measure of how far the model is from that, not an error.
    """
    check_inputs(inputs)
    check_batch_size(batch_size)
    return _gradient_x_input(forward, inputs, target, batch_size, progress, forward_kwargs)


def _gradient_x_input(forward: ForwardFn, inputs: torch.Tensor, target: TargetLike,
                      batch_size: int | None, progress: ProgressFn | None,
                      forward_kwargs: Mapping[str, Any] | None) -> Attribution:
    return plain_gradient_attribution(
        forward, inputs, target, batch_size, progress, forward_kwargs,
        method="gradient_x_input", multiply_by_inputs=True, absolute=False,
    )
