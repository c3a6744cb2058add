"""SmoothGrad (Smilkov et al., 2017): an attribution averaged over noisy copies of the input.

``inner="integrated_gradients"`` averages IG over the copies (Captum's NoiseTunnel over
IntegratedGradients, ``nt_type="smoothgrad"``); ``inner="gradient"`` averages the signed gradient
(NoiseTunnel over Saliency with ``abs=False``). All copies of all explicands go through the
engine as one batch of rows, chunked like every other method.

Noise is drawn from a private generator seeded with ``seed``, in Captum's layout (row =
explicand * n_samples + sample), so a seed reproduces NoiseTunnel after ``torch.manual_seed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch

from attribution_core.devices import model_device
from attribution_core.engine import GradientEngine, ProgressFn
from attribution_core.forward import ForwardFn
from attribution_core.methods._gradients import (
    TargetLike,
    expand_baselines,
    finish,
    gradient_pass,
    repeat_rows,
    repeat_target,
    seeded_normal,
)
from attribution_core.methods.ig import integrated_gradients
from attribution_core.model_outputs import normalise_target
from attribution_core.quadrature import QUADRATURE_METHODS
from attribution_core.results import Attribution
from attribution_core.validation import (
    check_batch_size,
    check_choice,
    check_inputs,
    check_int,
    check_non_negative_number,
    check_positive_int,
    check_requirement,
)

SmoothGradInner = Literal["integrated_gradients", "gradient"]
SMOOTHGRAD_INNER: tuple[str, ...] = ("integrated_gradients", "gradient")


def smoothgrad(
    forward: ForwardFn,
    inputs: torch.Tensor,
    baselines: torch.Tensor | float | None = None,
    target: TargetLike = None,
    inner: SmoothGradInner = "integrated_gradients",
    n_samples: int = 16,
    stdev: float = 0.1,
    seed: int = 0,
    n_steps: int = 32,
    method: str = "gausslegendre",
    batch_size: int | None = None,
    progress: ProgressFn | None = None,
    *,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Attribution:
    """Mean of the ``inner`` attribution over ``n_samples`` copies ``x + N(0, stdev^2)``.

    Completeness fields are against the *clean* input: ``delta = sum(attr) - (f(x) - f(x'))``
    with ``x'`` the baseline for IG and zeros for gradients, so the smoothing's own deviation
    shows in it; it is not expected to be small for ``inner="gradient"``.

    Parameters
    ----------
    forward : callable
        The model: an ``nn.Module``, a bound method of one, or any callable
        ``forward(points, **forward_kwargs)`` returning a tensor [rows, classes] or [rows] (or a
        tuple whose first item is, or an object with ``.logits``). Its parameters are frozen
        while it runs; the device is that of its first parameter (else the inputs').
    inputs : tensor
        Explicands [N, ...], floating point, N >= 1; the result comes back on their device.
    baselines : tensor, float or None, optional
        IG's baseline (``inner="integrated_gradients"`` only; None for gradients).
    target : int, list of int, tensor or None, optional
        The explained output: one class for all explicands or one per explicand, checked to be
        in 0..C-1. None for a model with one output per row.
    inner : str, optional
        "integrated_gradients" (default) or "gradient".
    n_samples : int, optional
        Noisy copies per explicand.
    stdev : float, optional
        The noise's standard deviation, absolute, in input units (the paper suggests 10-20 %
        of the input's range).
    seed : int, optional
        Seeds a private generator (the global RNG is neither read nor reseeded).
    n_steps, method : optional
        The inner IG's quadrature.
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
    check_choice("inner", inner, SMOOTHGRAD_INNER)
    check_positive_int("n_samples", n_samples)
    check_positive_int("n_steps", n_steps)
    check_non_negative_number("stdev", stdev)
    check_int("seed", seed)
    check_choice("method", method, QUADRATURE_METHODS)
    check_requirement(inner != "gradient" or baselines is None,
                      "inner='gradient' has no baseline; pass baselines=None.")
    return _smoothgrad(forward, inputs, expand_baselines(inputs, baselines), target, inner,
                       n_samples, float(stdev), seed, n_steps, method, batch_size, progress,
                       forward_kwargs)


def _smoothgrad(forward: ForwardFn, inputs: torch.Tensor, baselines: torch.Tensor,
                target: TargetLike, inner: str, n_samples: int, stdev: float, seed: int,
                n_steps: int, method: str, batch_size: int | None, progress: ProgressFn | None,
                forward_kwargs: Mapping[str, Any] | None) -> Attribution:
    n = inputs.shape[0]
    device = model_device(forward, inputs.device)
    x = inputs.detach().to(device)
    noise = seeded_normal((n * n_samples, *x.shape[1:]), stdev, x.dtype, seed).to(device)
    noisy = x.repeat_interleave(n_samples, dim=0) + noise
    params: dict[str, Any] = {"inner": inner, "n_samples": n_samples, "stdev": stdev,
                              "seed": seed}
    if inner == "gradient":
        owners = torch.arange(n, device=device)
        zeros = torch.zeros_like(x)
        rows = gradient_pass(
            forward, noisy, owners.repeat_interleave(n_samples), n, device, target,
            forward_kwargs, batch_size, progress,
            tail_points=torch.cat([x, zeros]), tail_owners=torch.cat([owners, owners]),
        )
        mean_gradient = rows.gradients.view(n, n_samples, *x.shape[1:]).mean(dim=1)
        return finish(
            attributions=mean_gradient, f_inputs=rows.tail_outputs[:n],
            f_baselines=rows.tail_outputs[n:], baselines=zeros, inputs=inputs,
            evaluations=n_samples, method="smoothgrad_gradient", target=target,
            params={**params, "forward_calls": rows.forward_calls},
        )

    noisy_kwargs = {name: repeat_rows(value, n, n_samples)
                    for name, value in (forward_kwargs or {}).items()}
    per_copy = integrated_gradients(
        forward, noisy, baselines.to(device).repeat_interleave(n_samples, dim=0),
        target=repeat_target(target, n, n_samples), n_steps=n_steps, method=method,
        batch_size=batch_size, progress=progress, forward_kwargs=noisy_kwargs,
    )
    attributions = per_copy.attributions.view(n, n_samples, *x.shape[1:]).mean(dim=1)
    # IG gave f at the noisy copies; completeness is reported against the clean input.
    engine = GradientEngine(forward, n, device,
                            target=normalise_target(target, n, device),
                            forward_kwargs=forward_kwargs)
    f_clean = engine.outputs(x, torch.arange(n, device=device))
    return finish(
        attributions=attributions, f_inputs=f_clean,
        f_baselines=per_copy.f_baselines.view(n, n_samples)[:, 0], baselines=baselines,
        inputs=inputs, evaluations=n_samples * n_steps, method="smoothgrad_ig", target=target,
        params={**params, "n_steps": n_steps, "quadrature": method,
                "mean_noisy_f_inputs": per_copy.f_inputs.view(n, n_samples).mean(1).tolist()},
        n_steps=n_steps, quadrature=method,
    )
