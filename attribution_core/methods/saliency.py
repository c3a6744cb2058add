"""Saliency: the plain gradient of the explained output at the input (Simonyan et al., 2014).

Same maths as Captum's ``Saliency`` (tested against it), but evaluated through the core's
engine so batching, out-of-memory back-off and ``forward_kwargs`` behave as for IG. The
gradient is signed by default; ``abs=True`` gives Captum's default absolute map.
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
from attribution_core.validation import check_batch_size, check_bool, check_inputs


def saliency(
    forward: ForwardFn,
    inputs: torch.Tensor,
    target: TargetLike = None,
    abs: bool = False,  # the name Captum's Saliency uses
    batch_size: int | None = None,
    progress: ProgressFn | None = None,
    *,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Attribution:
    """d f_target / d x for every explicand (``abs=True``: its absolute value).

    A gradient has no baseline: ``baselines`` holds zeros and ``delta`` is
    ``sum(attr) - (f(x) - f(0))``, which is *not* expected to be small.
    """
    check_inputs(inputs)
    check_batch_size(batch_size)
    check_bool("abs", abs)
    return _saliency(forward, inputs, target, abs, batch_size, progress, forward_kwargs)


def _saliency(forward: ForwardFn, inputs: torch.Tensor, target: TargetLike, absolute: bool,
              batch_size: int | None, progress: ProgressFn | None,
              forward_kwargs: Mapping[str, Any] | None) -> Attribution:
    return plain_gradient_attribution(
        forward, inputs, target, batch_size, progress, forward_kwargs,
        method="saliency_abs" if absolute else "saliency", multiply_by_inputs=False,
        absolute=absolute,
    )
