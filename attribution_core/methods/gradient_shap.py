"""GradientSHAP / expected gradients (Lundberg & Lee, 2017; Erion et al., 2021).

For every explicand, ``n_samples`` draws of (reference r from the baseline distribution, point
alpha ~ U(0, 1) on the straight line, optional input noise e); the attribution is the mean of
``(x + e - r) * grad f(r + alpha (x + e - r))``. In expectation it is IG averaged over the
reference distribution, so ``sum(attr) ~ f(x) - E_r f(r)``.

The draws follow Captum's ``GradientShap`` in kind and order (NumPy's legacy generator for the
reference indices and alphas, a torch generator for the noise), but from private generators
seeded with ``seed``: a seed reproduces Captum after ``np.random.seed``/``torch.manual_seed``
and leaves the global random state alone. Gradients run through the engine in chunks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from attribution_core.devices import model_device
from attribution_core.engine import GradientEngine, ProgressFn
from attribution_core.forward import ForwardFn
from attribution_core.methods._gradients import (
    TargetLike,
    finish,
    gradient_pass,
    outputs_in_chunks,
    seeded_normal,
)
from attribution_core.model_outputs import normalise_target
from attribution_core.results import Attribution
from attribution_core.validation import (
    check_batch_size,
    check_inputs,
    check_int,
    check_non_negative_number,
    check_positive_int,
    check_reference_rows,
)


def gradient_shap(
    forward: ForwardFn,
    inputs: torch.Tensor,
    baselines: torch.Tensor,
    target: TargetLike = None,
    n_samples: int = 32,
    stdev: float = 0.0,
    seed: int = 0,
    batch_size: int | None = None,
    progress: ProgressFn | None = None,
    *,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Attribution:
    """Expected gradients of ``forward``'s target output over a baseline distribution.

    Parameters
    ----------
    forward : callable
        The model: an ``nn.Module``, a bound method of one, or any callable
        ``forward(points, **forward_kwargs)`` returning a tensor [rows, classes] or [rows] (or a
        tuple whose first item is, or an object with ``.logits``). Its parameters are frozen
        while it runs; the device is that of its first parameter (else the inputs').
    inputs : tensor
        Explicands [N, ...], floating point, N >= 1; the result comes back on their device.
    baselines : tensor
        The distribution: [R, ...] reference rows shaped like one input row each (R >= 1).
    target : int, list of int, tensor or None, optional
        The explained output: one class for all explicands or one per explicand, checked to be
        in 0..C-1. None for a model with one output per row.
    n_samples : int, optional
        (reference, alpha) draws per explicand; ``delta`` shrinks as it grows (Monte Carlo).
    stdev : float, optional
        Noise added to each explicand copy (0: none).
    seed : int, optional
        Seeds a private generator.
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
        Here ``baselines`` holds the mean reference (for display) and ``f_baselines`` the mean
        of f over *all* R references, the quantity completeness is measured against.
    """
    check_inputs(inputs)
    check_batch_size(batch_size)
    check_positive_int("n_samples", n_samples)
    check_reference_rows(inputs, baselines)
    check_non_negative_number("stdev", stdev)
    check_int("seed", seed)
    return _gradient_shap(forward, inputs, baselines, target, n_samples, float(stdev), seed,
                          batch_size, progress, forward_kwargs)


def _gradient_shap(forward: ForwardFn, inputs: torch.Tensor, references: torch.Tensor,
                   target: TargetLike, n_samples: int, stdev: float, seed: int,
                   batch_size: int | None, progress: ProgressFn | None,
                   forward_kwargs: Mapping[str, Any] | None) -> Attribution:
    n, n_refs = inputs.shape[0], references.shape[0]
    device = model_device(forward, inputs.device)
    x = inputs.detach().to(device)
    refs = references.detach().to(device, x.dtype)
    n_rows = n * n_samples
    feature_shape = (1,) * (x.dim() - 1)
    # Captum's order of draws: reference indices, then noise, then the alphas.
    numpy_draws = np.random.RandomState(seed)
    chosen = torch.as_tensor(numpy_draws.choice(n_refs, n_rows), device=device)
    noise = seeded_normal((n_rows, *x.shape[1:]), stdev, x.dtype, seed).to(device)
    alphas = torch.as_tensor(numpy_draws.uniform(0.0, 1.0, n_rows), dtype=x.dtype,
                             device=device).view(-1, *feature_shape)
    noisy = x.repeat_interleave(n_samples, dim=0) + noise
    drawn_refs = refs.index_select(0, chosen)
    points = drawn_refs + alphas * (noisy - drawn_refs)
    owners = torch.arange(n, device=device)
    rows = gradient_pass(forward, points, owners.repeat_interleave(n_samples), n, device, target,
                         forward_kwargs, batch_size, progress, tail_points=x, tail_owners=owners)
    per_sample = (noisy - drawn_refs) * rows.gradients
    attributions = per_sample.view(n, n_samples, *x.shape[1:]).mean(dim=1)

    # E_r f(r) at each explicand's target (and with its forward kwargs): R rows per explicand.
    engine = GradientEngine(forward, n, device, target=normalise_target(target, n, device),
                            forward_kwargs=forward_kwargs)
    ref_rows = refs.repeat(n, *feature_shape)
    f_refs = outputs_in_chunks(engine, ref_rows, owners.repeat_interleave(n_refs), batch_size)
    f_baselines = f_refs.view(n, n_refs).mean(dim=1)
    mean_reference = refs.mean(dim=0, keepdim=True).expand_as(x)
    return finish(
        attributions=attributions, f_inputs=rows.tail_outputs, f_baselines=f_baselines,
        baselines=mean_reference, inputs=inputs, evaluations=n_samples, method="gradient_shap",
        target=target,
        params={"n_samples": n_samples, "stdev": stdev, "seed": seed, "n_references": n_refs,
                "forward_calls": rows.forward_calls + engine.forward_calls},
    )
