"""Auto IG's reported per-feature ``convergence`` against the true error, on nets with an exact
reference: does the estimate ever claim a better map than it delivered?

The reference integral is computed on a float64 copy of each net:

- smooth nets (tanh, sigmoid): composite Gauss-Legendre, ``SMOOTH_PANELS`` panels of
  ``SMOOTH_NODES`` nodes (its own error is estimated against half the panels and reported);
- piecewise-linear nets (ReLU MLP, ReLU + max-pool CNN): the gradient is constant between kinks,
  so the integral is exact once the kinks are located. A fine grid finds the cells whose two
  ends have different gradients; a cell with one kink gets it from f (the jump of f'), checked
  by the gradient just left and right of it; any other cell is split in eight, a few levels deep
  (what is left unresolved is bounded and reported).

Auto runs on the float32 net, as a user would. A run *under-reports* when its true per-feature
error max_i |A_i - A_ref,i| / max_i |A_ref,i| exceeds its reported ``convergence``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from attribution_core import integrated_gradients

SMOOTH_PANELS = 48
SMOOTH_NODES = 16
PL_GRID = 2048
PL_SPLIT = 8
PL_DEPTH = 4
AUTO_BUDGET = 1024


@dataclass(frozen=True)
class NetKind:
    name: str
    build: Callable[[torch.Generator], nn.Module]
    make_inputs: Callable[[int, torch.Generator], torch.Tensor]
    piecewise_linear: bool


def _init(module: nn.Module, generator: torch.Generator, gain: float) -> nn.Module:
    """Seeded weights (no global RNG): N(0, gain^2 / fan_in), biases N(0, 0.1^2)."""
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if name.endswith("bias"):
                parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))
            else:
                fan_in = parameter[0].numel()
                parameter.copy_(torch.randn(parameter.shape, generator=generator)
                                * gain / math.sqrt(fan_in))
    return module.eval()


def _mlp(activation: type[nn.Module], gain: float) -> Callable[[torch.Generator], nn.Module]:
    def build(generator: torch.Generator) -> nn.Module:
        return _init(nn.Sequential(nn.Linear(12, 32), activation(), nn.Linear(32, 32),
                                   activation(), nn.Linear(32, 3)), generator, gain)
    return build


def _cnn(generator: torch.Generator) -> nn.Module:
    return _init(nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 16, 24), nn.ReLU(), nn.Linear(24, 3)),
        generator, 1.6)


def _rows(n: int, generator: torch.Generator) -> torch.Tensor:
    # Inputs of varied size: small rows stay near-linear, large ones saturate or cross kinks.
    scale = 0.5 + 2.5 * torch.rand(n, 1, generator=generator)
    return scale * torch.randn(n, 12, generator=generator)


def _images(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=generator) * 2.0


NETS: tuple[NetKind, ...] = (
    NetKind("relu_mlp", _mlp(nn.ReLU, 1.6), _rows, True),
    NetKind("tanh_mlp", _mlp(nn.Tanh, 2.0), _rows, False),
    NetKind("sigmoid_mlp", _mlp(nn.Sigmoid, 4.0), _rows, False),
    NetKind("relu_maxpool_cnn", _cnn, _images, True),
)


# -- the float64 reference ------------------------------------------------------------------------

class _Path:
    """f and r = grad f * (x - x') at any alphas of one explicand's straight path (float64)."""

    def __init__(self, model: nn.Module, x: torch.Tensor, base: torch.Tensor, target: int
                 ) -> None:
        self.model, self.x, self.base, self.target = model, x, base, target
        self.diff = (x - base).reshape(-1)
        self.evaluations = 0

    def __call__(self, alphas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f_parts, r_parts = [], []
        for start in range(0, alphas.size, 4096):
            chunk = torch.as_tensor(alphas[start:start + 4096], dtype=torch.float64)
            shape = (-1,) + (1,) * (self.x.dim() - 1)
            points = (self.base + chunk.view(shape) * (self.x - self.base)).requires_grad_(True)
            out = self.model(points)[:, self.target]
            (grad,) = torch.autograd.grad(out.sum(), points)
            f_parts.append(out.detach().numpy())
            r_parts.append((grad.reshape(grad.shape[0], -1) * self.diff).numpy())
        self.evaluations += alphas.size
        return np.concatenate(f_parts), np.concatenate(r_parts)


def smooth_reference(path: _Path) -> tuple[np.ndarray, float]:
    """(integral of r over [0, 1], its estimated relative error vs half the panels)."""
    def composite(panels: int) -> np.ndarray:
        nodes, weights = np.polynomial.legendre.leggauss(SMOOTH_NODES)
        edges = np.linspace(0.0, 1.0, panels + 1)
        width = edges[1] - edges[0]
        alphas = (edges[:-1, None] + 0.5 * width * (nodes[None, :] + 1)).reshape(-1)
        _f, r = path(alphas)
        return (np.tile(0.5 * width * weights, panels)[:, None] * r).sum(0)

    fine, coarse = composite(SMOOTH_PANELS), composite(SMOOTH_PANELS // 2)
    return fine, float(np.abs(fine - coarse).max() / max(np.abs(fine).max(), 1e-300))


def piecewise_linear_reference(path: _Path) -> tuple[np.ndarray, float]:
    """(integral of the piecewise-constant r over [0, 1], bound of what stayed unresolved)."""
    alphas = np.linspace(0.0, 1.0, PL_GRID + 1)
    f, r = path(alphas)
    total = np.zeros(r.shape[1])
    unresolved = np.zeros(r.shape[1])
    cells = [(alphas[k], alphas[k + 1], f[k], f[k + 1], r[k], r[k + 1])
             for k in range(PL_GRID)]
    for depth in range(PL_DEPTH + 1):
        kinked = []
        for cell in cells:
            a, b, _fa, _fb, ra, rb = cell
            if _same(ra, rb):
                total += (b - a) * 0.5 * (ra + rb)
            else:
                kinked.append(cell)
        if not kinked:
            break
        resolved, rest = _single_kinks(path, kinked)
        for a, b, t, ra, rb in resolved:
            total += (t - a) * ra + (b - t) * rb
        if not rest:
            break
        if depth == PL_DEPTH:
            for a, b, _fa, _fb, ra, rb in rest:
                total += (b - a) * 0.5 * (ra + rb)
                unresolved += 0.5 * (b - a) * np.abs(rb - ra)
            break
        cells = _split(path, rest)
    scale = max(float(np.abs(total).max()), 1e-300)
    return total, float(unresolved.max() / scale)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.abs(a - b).max() <= 1e-10 * max(np.abs(a).max(), np.abs(b).max(), 1e-300))


def _single_kinks(path: _Path, cells: list[tuple[Any, ...]]
                  ) -> tuple[list[tuple[float, ...]], list[tuple[Any, ...]]]:
    """Cells with exactly one kink, located from f's jump and checked on both sides."""
    candidates = []
    for cell in cells:
        a, b, fa, fb, ra, rb = cell
        slope_a, slope_b = float(ra.sum()), float(rb.sum())
        if abs(slope_a - slope_b) > 1e-12 * max(abs(slope_a), abs(slope_b), 1e-300):
            t = a + (fb - fa - (b - a) * slope_b) / (slope_a - slope_b)
            if a < t < b:
                candidates.append((cell, float(t)))
    resolved, rest = [], [c for c in cells if all(c is not k for k, _t in candidates)]
    if candidates:
        probes = np.array([[t - 1e-7 * (c[1] - c[0]), t + 1e-7 * (c[1] - c[0])]
                           for c, t in candidates]).reshape(-1)
        _f, r = path(probes)
        for index, (cell, t) in enumerate(candidates):
            a, b, _fa, _fb, ra, rb = cell
            if _same(r[2 * index], ra) and _same(r[2 * index + 1], rb):
                resolved.append((a, b, t, ra, rb))
            else:
                rest.append(cell)
    return resolved, rest


def _split(path: _Path, cells: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    inner = np.array([np.linspace(c[0], c[1], PL_SPLIT + 1)[1:-1] for c in cells]).reshape(-1)
    f, r = path(inner)
    out = []
    per = PL_SPLIT - 1
    for index, (a, b, fa, fb, ra, rb) in enumerate(cells):
        nodes = np.linspace(a, b, PL_SPLIT + 1)
        fs = [fa, *f[index * per:(index + 1) * per], fb]
        rs = [ra, *r[index * per:(index + 1) * per], rb]
        out.extend((nodes[k], nodes[k + 1], fs[k], fs[k + 1], rs[k], rs[k + 1])
                   for k in range(PL_SPLIT))
    return out


def reference_attributions(model64: nn.Module, x: torch.Tensor, base: torch.Tensor,
                           targets: list[int], piecewise_linear: bool
                           ) -> tuple[torch.Tensor, list[float], int]:
    """(A_ref [N, ...] float64, each row's reference error bound, evaluations spent)."""
    rows, bounds, spent = [], [], 0
    for i, target in enumerate(targets):
        path = _Path(model64, x[i:i + 1], base[i:i + 1], target)
        integral, bound = (piecewise_linear_reference if piecewise_linear
                           else smooth_reference)(path)
        rows.append(torch.as_tensor(integral).view(x.shape[1:]))
        bounds.append(bound)
        spent += path.evaluations
    return torch.stack(rows), bounds, spent


def per_feature_error(a: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per explicand: max_i |A_i - A_ref,i| / max_i |A_ref,i| (the ``convergence`` measure)."""
    a = a.detach().double().cpu().reshape(a.shape[0], -1)
    reference = reference.detach().double().cpu().reshape(a.shape[0], -1)
    return (a - reference).abs().amax(1) / reference.abs().amax(1).clamp_min(1e-300)


# -- the oracle ------------------------------------------------------------------------------------

@dataclass
class _Problem:
    net: str
    model32: nn.Module
    x32: torch.Tensor
    targets: list[int]
    reference: torch.Tensor
    reference_error: float


def problems(n_models: int, n_inputs: int, nets: tuple[NetKind, ...] = NETS,
             seed: int = 0) -> list[_Problem]:
    """``n_models`` seeded nets of every kind, ``n_inputs`` explicands each, with references."""
    found = []
    for kind_index, kind in enumerate(nets):
        for m in range(n_models):
            generator = torch.Generator().manual_seed(seed + 1000 * kind_index + m)
            model32 = kind.build(generator).float()
            model64 = _copy64(model32)
            x = kind.make_inputs(n_inputs, generator).double()
            base = torch.zeros_like(x)
            with torch.no_grad():
                targets = [int(v) for v in model64(x).argmax(1).tolist()]
            reference, bounds, _spent = reference_attributions(model64, x, base, targets,
                                                               kind.piecewise_linear)
            found.append(_Problem(kind.name, model32, x.float(), targets, reference,
                                  max(bounds)))
    return found


def _copy64(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).double().eval()


def run_oracle(tolerances: tuple[float, ...], n_models: int, n_inputs: int,
               nets: tuple[NetKind, ...] = NETS, seeds: tuple[int, ...] = (0,)
               ) -> dict[str, Any]:
    """Per tolerance: runs, under-reports (true error > reported convergence), runs above the
    tolerance, the largest true / reported ratio and the evaluations auto spent."""
    started = time.perf_counter()
    found = [problem for seed in seeds for problem in problems(n_models, n_inputs, nets, seed)]
    reference_seconds = time.perf_counter() - started
    rows = []
    for tolerance in tolerances:
        per_net: dict[str, dict[str, Any]] = {}
        for problem in found:
            auto = integrated_gradients(problem.model32, problem.x32, target=problem.targets,
                                        n_steps="auto", tolerance=tolerance,
                                        max_evaluations=AUTO_BUDGET)
            true = per_feature_error(auto.attributions, problem.reference)
            reported = auto.convergence.double()
            entry = per_net.setdefault(problem.net, {"true": [], "reported": [], "evals": [],
                                                     "reference_error": 0.0})
            entry["true"].extend(true.tolist())
            entry["reported"].extend(reported.tolist())
            entry["evals"].extend(auto.n_evaluations.tolist())
            entry["reference_error"] = max(entry["reference_error"], problem.reference_error)
        rows.append(_summarise(tolerance, per_net))
    return {"tolerances": rows, "reference": {
        "smooth": f"composite Gauss-Legendre, {SMOOTH_PANELS} x {SMOOTH_NODES} nodes, float64",
        "piecewise_linear": f"kinks located on a {PL_GRID}-cell grid, exact between, float64",
        "seconds": round(reference_seconds, 2)},
        "runs_per_net_and_tolerance": n_models * n_inputs * len(seeds), "seeds": list(seeds)}


def _summarise(tolerance: float, per_net: dict[str, dict[str, Any]]) -> dict[str, Any]:
    nets = {}
    all_true, all_reported, all_evals = [], [], []
    for name, entry in per_net.items():
        true, reported = np.array(entry["true"]), np.array(entry["reported"])
        evals = np.array(entry["evals"])
        all_true.append(true)
        all_reported.append(reported)
        all_evals.append(evals)
        nets[name] = {
            "runs": int(true.size),
            "convergence_underreports": int((true > reported).sum()),
            "above_tolerance": int((true > tolerance).sum()),
            "max_true_over_reported": _round(float((true / np.maximum(reported, 1e-300)).max())),
            "max_true_error": _round(float(true.max())),
            "mean_evaluations": round(float(evals.mean()), 1),
            "budget_exhausted": int((evals >= AUTO_BUDGET).sum()),
            "reference_error_bound": _round(entry["reference_error"]),
        }
    true, reported = np.concatenate(all_true), np.concatenate(all_reported)
    evals = np.concatenate(all_evals)
    return {"tolerance": tolerance, "runs": int(true.size),
            "convergence_underreports": int((true > reported).sum()),
            "above_tolerance": int((true > tolerance).sum()),
            "max_true_over_reported": _round(float((true / np.maximum(reported, 1e-300)).max())),
            "mean_evaluations": round(float(evals.mean()), 1),
            "total_evaluations": int(evals.sum()), "nets": nets}


def _round(value: float) -> float:
    return float(f"{value:.4g}")


# -- f(x) and f(x') both near zero, attributions cancelling ---------------------------------------

class Twin(nn.Module):
    """f(z) = h(z_a) - h(z_b) over the two halves of z: x = [u, u] gives f(x) = f(0) = 0 and
    attributions that cancel in the sum while each one is large."""

    def __init__(self, generator: torch.Generator) -> None:
        super().__init__()
        self.h = _init(nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1)),
                       generator, 2.0)
        with torch.no_grad():
            self.h[2].bias.zero_()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        half = z.shape[1] // 2
        return self.h(z[:, :half]) - self.h(z[:, half:])


def cancelling_case(tolerance: float = 0.01) -> dict[str, Any]:
    """x = [u, u (1 + 1e-6)]: f(x) is a float32 rounding away from f(x') = 0, so no
    completeness tolerance can be met; the per-feature estimate has to decide."""
    generator = torch.Generator().manual_seed(7)
    model = Twin(generator)
    u = torch.randn(4, 6, generator=generator)
    x = torch.cat([u, u * (1 + 1e-6)], dim=1)
    base = torch.zeros_like(x)
    reference, _bounds, _spent = reference_attributions(_copy64(model), x.double(),
                                                        base.double(), [0] * 4, False)
    auto = integrated_gradients(model, x, base, target=None, n_steps="auto",
                                tolerance=tolerance, max_evaluations=AUTO_BUDGET)
    true = per_feature_error(auto.attributions, reference)
    return {"case": "f(x) and f(x') within float rounding of 0, attributions cancel",
            "tolerance": tolerance, "budget": AUTO_BUDGET,
            "evaluations": auto.n_evaluations.tolist(),
            "relative_delta": [_round(float(v)) for v in auto.relative_delta],
            "reported_convergence": [_round(float(v)) for v in auto.convergence],
            "true_per_feature_error": [_round(float(v)) for v in true],
            "convergence_underreports": int((true > auto.convergence.double()).sum())}
