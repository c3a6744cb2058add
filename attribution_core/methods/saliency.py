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

    Parameters
    ----------
    forward : callable
        The model: an ``nn.Module``, a bound method of one, or any callable
        ``forward(points, **forward_kwargs)`` returning a tensor [rows, classes] or [rows] (or a
        tuple whose first item is, or an object with ``.logits``). Its parameters are frozen
        while it runs; the device is that of its first parameter (else the inputs').
    inputs : tensor
        Explicands [N, ...], floating point, N >= 1; the result comes back on their device.
    target : int, list of int, tensor or None, optional
        The explained output: one class for all explicands or one per explicand, checked to be
        in 0..C-1. None for a model with one output per row.
    abs : bool, optional
        Return |gradient| (Captum's ``Saliency`` name for it).
    batch_size : int or None, optional
        Rows per model call. None (default) plans it from one row's measured activation memory
        (one extra forward pass, memoised per model and row shape); an int is honoured exactly.
        The result does not depend on it.
    progress : callable or None, optional
        ``progress(done, total)`` after every chunk of rows (model calls), from the calling
        thread.
    forward_kwargs : mapping or None, optional
        Extra keyword arguments of ``forward``. The per-row rule: a tensor whose first dimension
        is the number of explicands N belongs to the explicands (an attention mask) and follows
        each explicand through every row made from it; anything else is passed unchanged to
        every call.

    Returns
    -------
    Attribution
        A frozen result: ``attributions`` [N, ...] (the inputs' shape), ``f_inputs`` and
        ``f_baselines`` [N] (the target output at the explicand and at the baseline),
        ``delta`` [N] (sum of attributions minus ``f_inputs - f_baselines``, Captum's
        convergence delta) and ``relative_delta`` [N] (``|delta| / |f_inputs - f_baselines|``),
        ``n_evaluations`` [N] (gradient evaluations per explicand), ``baselines`` [N, ...],
        ``target``, ``method``, ``quadrature``, ``n_steps``, ``alphas`` (the nodes used),
        ``params`` and ``from_cache``; IG also ``convergence`` [N] (how far the map may still
        move, per feature, relative to its largest attribution; None when unknown).
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
