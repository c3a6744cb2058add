"""Shared plumbing of the gradient-based comparison methods (saliency, gradient x input, ...).

These methods need one gradient per (possibly noisy) input row. They run it through the same
:class:`GradientEngine` as Integrated Gradients, so batching, out-of-memory back-off, the
per-device lock, progress and per-explicand ``forward_kwargs`` behave exactly as for IG.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from attribution_core.devices import device_lock, model_device
from attribution_core.engine import GradientEngine, ProgressFn, evaluate_in_chunks
from attribution_core.forward import ForwardFn
from attribution_core.model_outputs import is_per_row, normalise_target
from attribution_core.results import Attribution, completeness
from attribution_core.validation import check_baselines

TargetLike = int | list[int] | torch.Tensor | None


def expand_baselines(inputs: torch.Tensor, baselines: torch.Tensor | float | None
                     ) -> torch.Tensor:
    """None -> zeros, a number -> that constant, a tensor -> broadcast to the inputs' shape."""
    check_baselines(inputs, baselines)
    if baselines is None:
        return torch.zeros_like(inputs)
    if isinstance(baselines, int | float):
        return torch.full_like(inputs, float(baselines))
    return torch.broadcast_to(baselines.to(inputs.dtype), inputs.shape).to(inputs.device)


def repeat_rows(value: Any, n_explicands: int, repeats: int) -> Any:
    """Repeat per-explicand tensors ``repeats`` times each (row = explicand * repeats + sample)."""
    if is_per_row(value, n_explicands):
        return value.repeat_interleave(repeats, dim=0)
    return value


def repeat_target(target: TargetLike, n_explicands: int, repeats: int) -> torch.Tensor | None:
    if target is None:
        return None
    tensor = normalise_target(target, n_explicands, torch.device("cpu"))
    assert tensor is not None
    return tensor.repeat_interleave(repeats)


@dataclass(frozen=True)
class GradientPass:
    """Outputs and gradients at every row, plus f at the extra ``tail`` rows (no gradient)."""

    outputs: torch.Tensor  # [rows]
    gradients: torch.Tensor  # [rows, ...]
    tail_outputs: torch.Tensor  # [tail rows]
    forward_calls: int


def gradient_pass(forward: ForwardFn, points: torch.Tensor, owners: torch.Tensor,
                  n_explicands: int, device: torch.device, target: TargetLike,
                  forward_kwargs: Mapping[str, Any] | None, batch_size: int | None,
                  progress: ProgressFn | None, tail_points: torch.Tensor,
                  tail_owners: torch.Tensor) -> GradientPass:
    """One engine sweep over ``points`` (rows owned by explicands ``owners``).

    ``tail_points`` (e.g. the clean inputs and the zero baseline) need f only: the engine lets
    them ride along in the last chunk's model call when they fit, so they rarely cost a call.
    """
    engine = GradientEngine(
        forward, n_explicands, device, target=normalise_target(target, n_explicands, device),
        forward_kwargs=forward_kwargs, batch_size=batch_size, progress=progress,
    )
    outputs = torch.empty(points.shape[0], dtype=points.dtype, device=device)
    grads = torch.empty_like(points)
    tail: dict[str, torch.Tensor] = {}

    def build(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        return points[start:stop], owners[start:stop]

    def consume(start: int, stop: int, chunk_outputs: torch.Tensor,
                chunk_grads: torch.Tensor) -> None:
        outputs[start:stop] = chunk_outputs
        grads[start:stop] = chunk_grads

    def consume_tail(values: torch.Tensor) -> None:
        tail["outputs"] = values

    engine.sweep(points.shape[0], build, consume, tail=(tail_points, tail_owners),
                 consume_tail=consume_tail)
    return GradientPass(outputs, grads, tail["outputs"], engine.forward_calls)


def plain_gradient_attribution(forward: ForwardFn, inputs: torch.Tensor, target: TargetLike,
                               batch_size: int | None, progress: ProgressFn | None,
                               forward_kwargs: Mapping[str, Any] | None, *, method: str,
                               multiply_by_inputs: bool, absolute: bool) -> Attribution:
    """Saliency (gradient, optionally |gradient|) or gradient x input at the inputs themselves.

    Neither method has a baseline, so the result records the zero input as ``baselines`` and
    ``delta = sum(attr) - (f(x) - f(0))``: a bookkeeping number, not an error expected to be small
    (it is exactly zero for gradient x input only on bias-free linear models).
    """
    n = inputs.shape[0]
    device = model_device(forward, inputs.device)
    x = inputs.detach().to(device)
    zeros = torch.zeros_like(x)
    owners = torch.arange(n, device=device)
    gradient_rows = gradient_pass(
        forward, x, owners, n, device, target, forward_kwargs, batch_size, progress,
        tail_points=zeros, tail_owners=owners,
    )
    attributions = gradient_rows.gradients
    if multiply_by_inputs:
        attributions = attributions * x
    if absolute:
        attributions = attributions.abs()
    return finish(
        attributions=attributions, f_inputs=gradient_rows.outputs,
        f_baselines=gradient_rows.tail_outputs, baselines=zeros, inputs=inputs,
        evaluations=1, method=method, target=target,
        params={"abs": absolute, "forward_calls": gradient_rows.forward_calls},
    )


def finish(*, attributions: torch.Tensor, f_inputs: torch.Tensor, f_baselines: torch.Tensor,
           baselines: torch.Tensor, inputs: torch.Tensor, evaluations: int, method: str,
           target: TargetLike, params: Mapping[str, Any], n_steps: int | str = 1,
           quadrature: str = "none") -> Attribution:
    """Assemble an :class:`Attribution` on the inputs' device with honest completeness fields."""
    delta, relative = completeness(attributions, f_inputs, f_baselines)
    home = inputs.device
    n = inputs.shape[0]
    target_tensor = normalise_target(target, n, home)
    return Attribution(
        attributions=attributions.detach().to(home), f_inputs=f_inputs.detach().to(home),
        f_baselines=f_baselines.detach().to(home), delta=delta.detach().to(home),
        relative_delta=relative.detach().to(home),
        n_evaluations=torch.full((n,), evaluations, dtype=torch.long),
        method=method, quadrature=quadrature, n_steps=n_steps,
        baselines=baselines.detach().to(home), target=target_tensor, params=dict(params),
    )


def outputs_in_chunks(engine: GradientEngine, points: torch.Tensor, owners: torch.Tensor,
                      batch_size: int | None) -> torch.Tensor:
    """f at every row without gradients, ``batch_size`` rows per model call (None: planned).

    The automatic size comes from the engine's gradient plan, which is conservative for a
    no-grad forward. Memory errors halve the chunk, as in the engine's own sweep.
    """
    n_rows = points.shape[0]
    result = torch.empty(n_rows, dtype=points.dtype, device=points.device)
    if n_rows == 0:
        return result
    rows = batch_size if batch_size is not None else engine.plan_batch(
        points[:1], owners[:1]).rows

    def evaluate(start: int, stop: int) -> torch.Tensor:
        return engine.outputs(points[start:stop], owners[start:stop])

    def consume(start: int, stop: int, values: torch.Tensor) -> None:
        result[start:stop] = values.to(result.dtype)

    with device_lock(engine.device):
        evaluate_in_chunks(n_rows, rows, engine.device, evaluate, consume)
    return result


def seeded_normal(shape: tuple[int, ...], stdev: float, dtype: torch.dtype, seed: int
                  ) -> torch.Tensor:
    """Gaussian noise from a private CPU generator (the global RNG is left untouched).

    Drawn as ``torch.normal(0, std_tensor)`` like Captum's NoiseTunnel, on the CPU, so a seed
    gives the same noise on every device and the same draws as Captum after
    ``torch.manual_seed(seed)``.
    """
    generator = torch.Generator().manual_seed(seed)
    return torch.normal(0.0, torch.full(shape, float(stdev), dtype=dtype), generator=generator)
