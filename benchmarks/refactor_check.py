"""Bit-for-bit check that a refactor left the numbers alone: a fixed set of library calls on small
float64 nets, saved to a file on one tree and compared on another.

    python -m benchmarks.refactor_check --save FILE     # on the tree before the change
    python -m benchmarks.refactor_check --compare FILE  # on the tree after it

Prints JSON: every output's name with whether it is bit-for-bit equal (``compare``), or the names
saved (``save``). Runs on the CPU in float64 so the comparison is deterministic.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from attribution_core import (
    gradient_shap,
    ig2,
    integrated_gradients,
    saliency,
    smoothgrad,
)
from attribution_core.metrics import (
    deletion_curve,
    infidelity,
    insertion_curve,
    sensitivity_n,
)
from attribution_core.metrics_checks import completeness_error, rank_correlation


def _nets() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(),
                        nn.Linear(16, 3)).double()
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 36, 3)).double()
    return mlp.eval(), cnn.eval()


def _fields(prefix: str, result: Any) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for name in ("attributions", "delta", "relative_delta", "convergence", "f_inputs",
                 "f_baselines", "outputs", "auc", "normalised_auc", "correlation",
                 "distance_trace", "step_sizes"):
        value = getattr(result, name, None)
        if isinstance(value, torch.Tensor):
            out[f"{prefix}.{name}"] = value.detach().cpu().contiguous()
    if isinstance(result, torch.Tensor):
        out[prefix] = result.detach().cpu().contiguous()
    return out


def outputs() -> dict[str, torch.Tensor]:
    """Every checked output, by name."""
    mlp, cnn = _nets()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 6, generator=gen, dtype=torch.float64)
    refs = torch.randn(5, 6, generator=gen, dtype=torch.float64)
    image = torch.randn(2, 1, 6, 6, generator=gen, dtype=torch.float64)
    target = [0, 2, 1]
    calls: dict[str, Callable[[], Any]] = {
        "ig_fixed": lambda: integrated_gradients(mlp, x, target=target, n_steps=16),
        "ig_fixed_batch5": lambda: integrated_gradients(mlp, x, target=target, n_steps=16,
                                                        batch_size=5, method="riemann_trapezoid"),
        "ig_auto": lambda: integrated_gradients(mlp, x, target=target, n_steps="auto",
                                                tolerance=0.02, max_evaluations=128),
        "ig_cnn": lambda: integrated_gradients(cnn, image, target=1, n_steps=12),
        "ig2": lambda: ig2(mlp, x, refs, target=target, n_steps=8),
        "ig2_halving": lambda: ig2(mlp, x, refs, target=target, n_steps=8, halving=True,
                                   rule="middle"),
        "smoothgrad": lambda: smoothgrad(mlp, x, target=target, n_samples=4, n_steps=8),
        "gradient_shap": lambda: gradient_shap(mlp, x, refs, target=target, n_samples=8),
        "saliency": lambda: saliency(cnn, image, target=0),
    }
    out: dict[str, torch.Tensor] = {}
    results = {name: call() for name, call in calls.items()}
    for name, result in results.items():
        out.update(_fields(name, result))
    attributions = results["ig_fixed"].attributions
    out.update(_fields("deletion", deletion_curve(mlp, x, attributions, target=target,
                                                  n_points=5)))
    out.update(_fields("insertion", insertion_curve(mlp, x, attributions, target=target,
                                                    n_points=5, batch_size=3)))
    out.update(_fields("sensitivity_n", sensitivity_n(mlp, x, attributions, target=target,
                                                      n_subsets=6)))
    out.update(_fields("infidelity", infidelity(mlp, x, attributions, target=target,
                                                n_samples=6)))
    error = completeness_error(results["ig_fixed"])
    out.update({f"completeness.{k}": v.detach().cpu().contiguous()
                for k, v in vars(error).items() if isinstance(v, torch.Tensor)})
    out["rank_correlation"] = rank_correlation(attributions, results["ig2"].attributions)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--save", metavar="FILE")
    group.add_argument("--compare", metavar="FILE")
    args = parser.parse_args(argv)
    now = outputs()
    if args.save:
        save_file(now, args.save)
        print(json.dumps({"saved": sorted(now)}, indent=1))
        return 0
    before = load_file(args.compare)
    report = {name: bool(name in now and now[name].shape == before[name].shape
                         and torch.equal(now[name], before[name])) for name in sorted(before)}
    missing = sorted(set(now) - set(before))
    print(json.dumps({"equal": report, "new_outputs": missing,
                      "all_equal": all(report.values()) and not missing}, indent=1))
    return 0 if all(report.values()) and not missing else 1


if __name__ == "__main__":
    sys.exit(main())
