"""Integrated Gradients: our core vs Captum vs the raw forward+backward limit, in one run, and
the auto step count's reported convergence against exact references (the oracle).

    python -m benchmarks.ig_vs_captum [--quick] [--models cnn,text,resnet18]
                                      [--sections speed,oracle] [--out FILE]

Prints JSON. Ratios are measured within one process, round-robin, so machine noise hits every
contender alike; absolute seconds are given for context only. The ``auto_ig_oracle`` section
(benchmarks/auto_ig_oracle.py) counts, per tolerance, the runs whose true per-feature error
exceeds the reported ``convergence`` (``convergence_underreports``) on ReLU, tanh and sigmoid
MLPs and a ReLU + max-pool CNN, plus a run whose f(x) and f(x') are within float rounding of 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from captum.attr import IntegratedGradients
from torch import nn

from attribution_core import integrated_gradients, pick_device
from attribution_core.quadrature import quadrature
from benchmarks import auto_ig_oracle
from benchmarks.common import (
    best_batch,
    dump_report,
    environment,
    forward_backward_rows,
    interleaved_medians,
    path_points,
    synchronise,
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


GL_LADDER = (4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768)
REFERENCE_STEPS = 1024
CAPTUM_RECOMMENDED_STEPS = 300


def _per_feature_error(a: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per input: max_i |A_i - A_ref,i| / max_i |A_ref,i|."""
    a = a.detach().double().cpu().reshape(a.shape[0], -1)
    reference = reference.detach().double().cpu().reshape(a.shape[0], -1)
    return (a - reference).abs().amax(1) / reference.abs().amax(1).clamp_min(1e-300)


def _evals_to_tolerance(case: Case, n_inputs: int, tolerance: float, device: torch.device
                        ) -> dict[str, Any]:
    """Evaluations (and time) to a map within ``tolerance`` per feature of 1024-step GL.

    Auto runs at ``tolerance``; its own stopping rule decides, and whether it really got there
    is checked against the reference. Fixed Gauss-Legendre climbs a ladder of step counts until
    every input is within the tolerance. Captum IG at 300 steps is timed on the same inputs.
    """
    generator = torch.Generator().manual_seed(2)
    x, kwargs = case.make_inputs(n_inputs, generator)
    baseline = torch.zeros_like(x)
    extra = tuple(kwargs.values()) or None
    batch = case.batch_candidates[-1]
    reference = integrated_gradients(case.model, x, baseline, target=1, n_steps=REFERENCE_STEPS,
                                     forward_kwargs=kwargs, batch_size=batch).attributions
    started = time.perf_counter()
    auto = integrated_gradients(case.model, x, baseline, target=1, n_steps="auto",
                                tolerance=tolerance, max_evaluations=REFERENCE_STEPS // 2,
                                forward_kwargs=kwargs)
    synchronise(device)
    auto_seconds = time.perf_counter() - started
    auto_error = _per_feature_error(auto.attributions, reference)
    fixed_needed, fixed_seconds = None, None
    for steps in GL_LADDER:
        started = time.perf_counter()
        fixed = integrated_gradients(case.model, x, baseline, target=1, n_steps=steps,
                                     forward_kwargs=kwargs)
        synchronise(device)
        elapsed = time.perf_counter() - started
        if bool((_per_feature_error(fixed.attributions, reference) <= tolerance).all()):
            fixed_needed, fixed_seconds = steps, elapsed
            break
    captum = IntegratedGradients(case.model)
    started = time.perf_counter()
    captum.attribute(x, baseline, target=1, n_steps=CAPTUM_RECOMMENDED_STEPS,
                     method="gausslegendre", internal_batch_size=batch,
                     additional_forward_args=extra)
    synchronise(device)
    captum_seconds = time.perf_counter() - started
    auto_reached = bool((auto_error <= tolerance).all())
    auto_evaluations = float(auto.n_evaluations.double().max())
    return {
        "model": case.name, "tolerance_per_feature": tolerance, "inputs": n_inputs,
        "reference": f"gausslegendre {REFERENCE_STEPS}",
        "auto_evaluations_per_input": auto.n_evaluations.tolist(),
        "auto_per_feature_error": [round(float(e), 6) for e in auto_error],
        "auto_reported_convergence": [round(float(c), 6) for c in auto.convergence],
        "auto_reached": auto_reached,
        "fixed_gausslegendre_steps_needed": fixed_needed,
        "ratio_auto_vs_fixed_evaluations": round(auto_evaluations / fixed_needed, 3)
        if fixed_needed else None,
        "seconds": {"auto": round(auto_seconds, 4), "fixed_needed": fixed_seconds and
                    round(fixed_seconds, 4), "captum_300": round(captum_seconds, 4)},
        # Ours = auto: what a user gets without knowing the step count in advance.
        "time_to_1pct_vs_captum_300": round(auto_seconds / captum_seconds, 3)
        if auto_reached else None,
        "time_to_1pct_fixed_vs_captum_300": round(fixed_seconds / captum_seconds, 3)
        if fixed_seconds else None,
    }


ORACLE_TOLERANCES = (0.05, 0.02, 0.01, 0.005, 0.001)  # every tolerance the pages offer


def _oracle(quick: bool, seeds: tuple[int, ...]) -> dict[str, Any]:
    """Auto IG on the CPU in float32 vs float64 references: 12 explicands per net and seed, two
    seeds per net (one with --quick, and the three loosest tolerances): 96 (48) runs per
    tolerance."""
    tolerances = ORACLE_TOLERANCES[:3] if quick else ORACLE_TOLERANCES
    found = auto_ig_oracle.run_oracle(tolerances, n_models=1 if quick else 2, n_inputs=12,
                                      seeds=seeds)
    found["cancelling"] = auto_ig_oracle.cancelling_case(0.01)
    found["convergence_underreports"] = sum(row["convergence_underreports"]
                                            for row in found["tolerances"])
    return found


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and steps (smoke)")
    parser.add_argument("--models", default="cnn,text,resnet18")
    parser.add_argument("--sections", default="speed,oracle",
                        help="speed (with evaluations to 1 %%) and/or oracle (auto IG's "
                             "reported convergence vs exact references)")
    parser.add_argument("--oracle-seeds", default="0",
                        help="comma-separated seed sets for the oracle's nets and inputs")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device()
    names = args.models.split(",")
    steps = [8, 32] if args.quick else [32, 300]
    sections = args.sections.split(",")
    report: dict[str, Any] = {"benchmark": "ig_vs_captum", "environment": environment(device),
                              "speed": [], "evals_to_1pct": []}
    with torch.inference_mode(False):
        if "oracle" in sections:
            report["auto_ig_oracle"] = _oracle(
                args.quick, tuple(int(v) for v in args.oracle_seeds.split(",")))
            print(json.dumps(report["auto_ig_oracle"]), file=sys.stderr, flush=True)
        for case in _cases(device, args.quick, names) if "speed" in sections else []:
            for n_steps in steps:
                report["speed"].append(_speed(case, n_steps, device))
                print(json.dumps(report["speed"][-1]), file=sys.stderr, flush=True)
            n_inputs = 1 if case.name.startswith("resnet") else (2 if args.quick else 8)
            report["evals_to_1pct"].append(_evals_to_tolerance(case, n_inputs, 0.01, device))
            print(json.dumps(report["evals_to_1pct"][-1]), file=sys.stderr, flush=True)
    print(dump_report(report, args.out))
    return report


if __name__ == "__main__":
    main()
