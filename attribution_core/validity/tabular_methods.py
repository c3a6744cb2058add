"""The attribution methods the tabular validity suite compares, under fixed names.

``IG(mean)`` (64 Gauss-Legendre steps from the training mean) and ``IG2(random)`` (16 random
training references, 64 path steps, automatic eta) are the headline rows; the others vary the
baseline, the references, the step count, or are the comparison methods. ``Random`` (seeded
Gaussian scores) is the floor every metric has to separate a method from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from attribution_core.methods.gradient_shap import gradient_shap
from attribution_core.methods.gradient_x_input import gradient_x_input
from attribution_core.methods.ig import integrated_gradients
from attribution_core.methods.ig2 import ig2
from attribution_core.methods.saliency import saliency
from attribution_core.methods.smoothgrad import smoothgrad
from attribution_core.modalities.tabular import distant_target_indices

IG_STEPS = 64
IG2_REFERENCES = 16
IG2_STEPS = 64
UNIFORM_DRAWS = 8
EXPECTED_GRADIENT_SAMPLES = 64
SMOOTHGRAD_SAMPLES = 16
SMOOTHGRAD_SD = 0.15  # in feature units; the features have sd 1 (10-20 % of a +-3 range)
GRADIENT_SHAP_SD = 0.1


@dataclass(frozen=True)
class MethodContext:
    """What a method may use: the model, the explicands, the training set, a seed."""

    model: nn.Module
    x: torch.Tensor  # [B, d] float32
    train_x: torch.Tensor  # [N, d] float32
    train_y: torch.Tensor  # [N] float64, the standardised targets
    seed: int

    @property
    def mean(self) -> torch.Tensor:
        return self.train_x.mean(dim=0, keepdim=True)


@dataclass(frozen=True)
class TabularMethod:
    name: str
    family: str  # "IG", "IG2", "comparison" or "control"
    run: Callable[[MethodContext], torch.Tensor]  # -> attributions [B, d]


def _ig_mean(ctx: MethodContext) -> torch.Tensor:
    return integrated_gradients(ctx.model, ctx.x, baselines=ctx.mean.expand_as(ctx.x),
                                n_steps=IG_STEPS).attributions


def _ig_zeros(ctx: MethodContext) -> torch.Tensor:
    return integrated_gradients(ctx.model, ctx.x, baselines=None, n_steps=IG_STEPS).attributions


def _ig_uniform(ctx: MethodContext) -> torch.Tensor:
    """IG averaged over baselines drawn uniformly in the training data's bounding box."""
    low, high = ctx.train_x.min(dim=0).values, ctx.train_x.max(dim=0).values
    generator = torch.Generator().manual_seed(ctx.seed)
    total = torch.zeros_like(ctx.x)
    for _ in range(UNIFORM_DRAWS):
        base = low + (high - low) * torch.rand(ctx.x.shape, generator=generator)
        total += integrated_gradients(ctx.model, ctx.x, baselines=base.to(ctx.x.dtype),
                                      n_steps=IG_STEPS).attributions
    return total / UNIFORM_DRAWS


def _expected_gradients(ctx: MethodContext) -> torch.Tensor:
    return gradient_shap(ctx.model, ctx.x, baselines=ctx.train_x, stdev=0.0,
                         n_samples=EXPECTED_GRADIENT_SAMPLES, seed=ctx.seed).attributions


def _random_references(ctx: MethodContext) -> torch.Tensor:
    """[B, k, d]: k training rows per explicand, drawn by a per-case seeded generator."""
    rows = []
    for case in range(ctx.x.shape[0]):
        generator = torch.Generator().manual_seed(ctx.seed * 100_003 + case)
        rows.append(torch.randperm(ctx.train_x.shape[0], generator=generator)[:IG2_REFERENCES])
    return ctx.train_x[torch.stack(rows)]


def _far_references(ctx: MethodContext, nearest: bool) -> torch.Tensor:
    """Rows whose targets are farthest from the explicand's prediction (regression's "other
    class", as the evaluation code defines it); ``nearest``: of those (top quarter by target
    distance), the k nearest to the explicand in feature space."""
    with torch.no_grad():
        predictions = ctx.model(ctx.x).reshape(-1).double().numpy()
    targets = ctx.train_y.double().numpy()
    rows = []
    for case, value in enumerate(predictions):
        if not nearest:
            rows.append(torch.as_tensor(distant_target_indices(
                targets, float(value), k=IG2_REFERENCES, seed=ctx.seed + case)))
            continue
        distance = np.abs(targets - value)
        far = np.argsort(-distance, kind="stable")[: max(IG2_REFERENCES, len(targets) // 4)]
        gaps = (ctx.train_x[torch.as_tensor(far)] - ctx.x[case]).norm(dim=1)
        rows.append(torch.as_tensor(far)[torch.argsort(gaps, stable=True)[:IG2_REFERENCES]])
    return ctx.train_x[torch.stack(rows).long()]


def _ig2_with(references: Callable[[MethodContext], torch.Tensor], steps: int
              ) -> Callable[[MethodContext], torch.Tensor]:
    def run(ctx: MethodContext) -> torch.Tensor:
        return ig2(ctx.model, ctx.x, references(ctx), n_steps=steps).attributions
    return run


def _smoothgrad(ctx: MethodContext) -> torch.Tensor:
    return smoothgrad(ctx.model, ctx.x, baselines=ctx.mean.expand_as(ctx.x),
                      n_samples=SMOOTHGRAD_SAMPLES, stdev=SMOOTHGRAD_SD, seed=ctx.seed,
                      n_steps=32).attributions


def _gradient_shap(ctx: MethodContext) -> torch.Tensor:
    return gradient_shap(ctx.model, ctx.x, baselines=ctx.train_x, stdev=GRADIENT_SHAP_SD,
                         n_samples=32, seed=ctx.seed).attributions


def _random(ctx: MethodContext) -> torch.Tensor:
    generator = torch.Generator().manual_seed(ctx.seed)
    return torch.randn(ctx.x.shape, generator=generator, dtype=ctx.x.dtype)


def tabular_methods() -> tuple[TabularMethod, ...]:
    """Every method of the tabular suite, headline rows first."""
    return (
        TabularMethod("IG(mean)", "IG", _ig_mean),
        TabularMethod("IG2(random)", "IG2", _ig2_with(_random_references, IG2_STEPS)),
        TabularMethod("IG(zeros)", "IG", _ig_zeros),
        TabularMethod(f"IG(uniform x{UNIFORM_DRAWS})", "IG", _ig_uniform),
        TabularMethod("ExpectedGradients(data)", "IG", _expected_gradients),
        TabularMethod("IG2(random, 16 steps)", "IG2", _ig2_with(_random_references, 16)),
        TabularMethod("IG2(random, 256 steps)", "IG2", _ig2_with(_random_references, 256)),
        TabularMethod("IG2(far targets)", "IG2",
                      _ig2_with(lambda ctx: _far_references(ctx, nearest=False), IG2_STEPS)),
        TabularMethod("IG2(nearest far targets)", "IG2",
                      _ig2_with(lambda ctx: _far_references(ctx, nearest=True), IG2_STEPS)),
        TabularMethod("Saliency", "comparison",
                      lambda ctx: saliency(ctx.model, ctx.x, abs=True).attributions),
        TabularMethod("Gradient x input", "comparison",
                      lambda ctx: gradient_x_input(ctx.model, ctx.x).attributions),
        TabularMethod("SmoothGrad(IG)", "comparison", _smoothgrad),
        TabularMethod("GradientSHAP", "comparison", _gradient_shap),
        TabularMethod("Random", "control", _random),
    )
