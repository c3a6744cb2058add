"""Integrated Gradients: our core vs Captum vs the raw forward+backward limit, in one run.

    python -m benchmarks.ig_vs_captum [--quick] [--models cnn,text,resnet18] [--out FILE]

Prints JSON. Ratios are measured within one process, round-robin, so machine noise hits every
contender alike; absolute seconds are given for context only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from captum.attr import IntegratedGradients
from torch import nn

from attribution_core import integrated_gradients, pick_device
from attribution_core.quadrature import quadrature
from benchmarks.common import (
    best_batch,
    dump_report,
    environment,
    forward_backward_rows,
    interleaved_medians,
    path_points,
)


class SmallCnn(nn.Module):
    """Digits-sized CNN (1x8x8 -> 10 classes)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 16, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class TextEncoder(nn.Module):
    """MiniLM-sized encoder (6 layers, hidden 384) over token embeddings, mean-pooled, 2 classes."""

    def __init__(self) -> None:
        super().__init__()
        from transformers import BertConfig, BertModel

        config = BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                            intermediate_size=1536, vocab_size=1000)
        self.encoder = BertModel(config, add_pooling_layer=False)
        self.head = nn.Linear(384, 2)

    def forward(self, embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return self.head((hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0))


@dataclass(frozen=True)
class Case:
    name: str
    model: nn.Module
    make_inputs: Callable[[int, torch.Generator], tuple[torch.Tensor, dict[str, torch.Tensor]]]
    batch_candidates: list[int]
    repeats: int


def _cases(device: torch.device, quick: bool, names: list[str]) -> list[Case]:
    import torchvision

    torch.manual_seed(0)
    cases = []
    if "cnn" in names:
        cases.append(Case("small_cnn_8x8", SmallCnn().to(device).eval(),
                          lambda n, g: (torch.rand(n, 1, 8, 8, generator=g).to(device), {}),
                          [32, 64, 128, 300], 5 if quick else 41))
    if "text" in names:
        def text_inputs(n: int, g: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            mask = torch.ones(n, 64, dtype=torch.long)
            return (0.5 * torch.randn(n, 64, 384, generator=g)).to(device), {
                "attention_mask": mask.to(device)}
        cases.append(Case("minilm_sized_text_64_tokens", TextEncoder().to(device).eval(),
                          text_inputs, [16, 32, 64], 2 if quick else 5))
    if "resnet18" in names:
        side = 224
        cases.append(Case(f"resnet18_{side}x{side}",
                          torchvision.models.resnet18(weights=None).to(device).eval(),
                          lambda n, g: (torch.rand(n, 3, side, side, generator=g).to(device), {}),
                          [8, 16, 32] if device.type == "cpu" else [32, 64, 128, 300],
                          1 if quick else 2))
    return cases


def _speed(case: Case, n_steps: int, device: torch.device) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(1)
    x, kwargs = case.make_inputs(1, generator)
    baseline = torch.zeros_like(x)
    target = 1
    alphas = torch.tensor(quadrature("gausslegendre", n_steps).alphas, device=device)
    points = path_points(x, baseline, alphas)
    batch, _ = best_batch(case.model, points, target, case.batch_candidates, device, kwargs)
    captum = IntegratedGradients(case.model)
    extra = tuple(kwargs.values()) or None
    medians = interleaved_medians({
        "ours": lambda: integrated_gradients(
            case.model, x, baseline, target=target, n_steps=n_steps, batch_size=batch,
            forward_kwargs=kwargs),
        "ours_auto_batch": lambda: integrated_gradients(
            case.model, x, baseline, target=target, n_steps=n_steps, forward_kwargs=kwargs),
        "captum": lambda: captum.attribute(
            x, baseline, target=target, n_steps=n_steps, method="gausslegendre",
            internal_batch_size=batch, additional_forward_args=extra),
        "captum_with_delta": lambda: captum.attribute(
            x, baseline, target=target, n_steps=n_steps, method="gausslegendre",
            internal_batch_size=batch, additional_forward_args=extra,
            return_convergence_delta=True),
        "limit": lambda: forward_backward_rows(case.model, points, batch, target, kwargs),
    }, case.repeats, device)
    return {
        "model": case.name, "n_steps": n_steps, "method": "gausslegendre", "batch_size": batch,
        "seconds": {k: round(v, 5) for k, v in medians.items()},
        "ratio_vs_captum": round(medians["ours"] / medians["captum"], 3),
        "ratio_vs_limit": round(medians["ours"] / medians["limit"], 3),
        # Ours always returns the completeness delta; Captum computes it only when asked.
        "ratio_vs_captum_with_delta": round(medians["ours"] / medians["captum_with_delta"], 3),
        "ratio_auto_batch_vs_captum": round(medians["ours_auto_batch"] / medians["captum"], 3),
        "repeats": case.repeats,
    }


def _evals_to_tolerance(case: Case, n_inputs: int, tolerance: float, max_steps: int
                        ) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(2)
    x, kwargs = case.make_inputs(n_inputs, generator)
    auto = integrated_gradients(case.model, x, target=1, n_steps="auto", tolerance=tolerance,
                                max_evaluations=max_steps, forward_kwargs=kwargs)
    fixed_needed = torch.full((n_inputs,), -1, dtype=torch.long)
    steps = 8
    while steps <= max_steps and bool((fixed_needed < 0).any()):
        res = integrated_gradients(case.model, x, target=1, n_steps=steps,
                                   method="riemann_trapezoid", forward_kwargs=kwargs)
        newly = (fixed_needed < 0) & (res.relative_delta.cpu() <= tolerance)
        fixed_needed[newly] = steps
        steps *= 2
    reached = (fixed_needed > 0) & (auto.relative_delta.cpu() <= tolerance)
    ratios = (auto.n_evaluations[reached].double() / fixed_needed[reached].double()).tolist()
    return {
        "model": case.name, "tolerance": tolerance, "inputs": n_inputs,
        "inputs_compared": int(reached.sum()),
        "auto_evaluations": auto.n_evaluations.tolist(),
        "fixed_trapezoid_steps_needed": fixed_needed.tolist(),
        "median_ratio_auto_vs_fixed": round(statistics.median(ratios), 3) if ratios else None,
        "median_auto_evaluations": statistics.median(auto.n_evaluations.tolist()),
        "median_fixed_steps": statistics.median(fixed_needed[reached].tolist()) if ratios
        else None,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and steps (smoke)")
    parser.add_argument("--models", default="cnn,text,resnet18")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device()
    names = args.models.split(",")
    steps = [8, 32] if args.quick else [32, 300]
    report: dict[str, Any] = {"benchmark": "ig_vs_captum", "environment": environment(device),
                              "speed": [], "evals_to_1pct": []}
    with torch.inference_mode(False):
        for case in _cases(device, args.quick, names):
            for n_steps in steps:
                report["speed"].append(_speed(case, n_steps, device))
                print(json.dumps(report["speed"][-1]), file=sys.stderr, flush=True)
            if not case.name.startswith("resnet"):
                report["evals_to_1pct"].append(_evals_to_tolerance(
                    case, 4 if args.quick else 20, 0.01, 256 if args.quick else 4096))
    print(dump_report(report, args.out))
    return report


if __name__ == "__main__":
    main()
