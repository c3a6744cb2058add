"""IG2: our core vs the reference code's structure vs the forward+2-backward limit, in one run.

    PYTHONPATH=. python -m benchmarks.ig2 [--quick] [--models cnn,resnet18] [--out FILE]

Prints JSON. Contenders run round-robin in one process (medians of a few repeats), so machine
noise hits all alike; absolute seconds are context only. B = 8 references, one explicand.
- ratio_vs_naive: ours (rule="left") / the reference code's structure (whole path first, one
  point per call, then the integration in a second sweep: 2T + 1 calls of B rows), rule "left".
- ratio_vs_limit: ours (default rule, trapezoid) / (T + 1) x B rows of one forward and two
  backward passes at the best batch size.
- ratio_vs_ig: ours (trapezoid) / Integrated Gradients (our core) at the same step count.
- dual_gradient: per-call seconds of the two ways to get df/dz and dD/dz from one forward pass.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from attribution_core import ig2, integrated_gradients, pick_device
from attribution_core.engine import select_target
from benchmarks.common import (
    best_batch,
    dump_report,
    environment,
    forward_backward_rows,
    interleaved_medians,
)

N_REFERENCES = 8
LIMIT_BATCHES = (8, 32, 128, 256)


class SmallCnn(nn.Module):
    """CIFAR-sized CNN (3x32x32 -> 10 classes)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def build(name: str, device: torch.device) -> tuple[nn.Module, int]:
    """(model in eval mode with random weights, image side)."""
    torch.manual_seed(0)
    if name == "cnn":
        return SmallCnn().eval().to(device), 32
    if name == "resnet18":
        from torchvision.models import resnet18

        # 224 is the model's native size; on 2 shared CPU cores even 64 x 64 runs ~1 s per path
        # point (8 rows, forward + 2 backward), too slow for a 10-minute benchmark: use 32.
        return resnet18(weights=None).eval().to(device), 224 if device.type == "cuda" else 32
    raise ValueError(f"Unknown model {name!r}.")


def naive_ig2_left(model: nn.Module, layer: nn.Module, x: torch.Tensor, refs: torch.Tensor,
                   target: int, n_steps: int, eta: float) -> torch.Tensor:
    """The authors' structure: the whole GradPath first (one call per point), stored, then a
    second sweep integrating df/dz(g_j) * (g_j - g_{j+1}); 2T + 1 calls of B rows."""
    seen: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, args, _o: seen.append(args[0]))
    try:
        with torch.no_grad():
            model(refs)
        rep_ref = seen.pop().flatten(1)
        g = x.expand_as(refs).clone()
        path = [g]
        for _ in range(n_steps):
            z = g.detach().requires_grad_(True)
            model(z)
            loss = (seen.pop().flatten(1) - rep_ref).pow(2).mean(1).sum()
            (d,) = torch.autograd.grad(loss, z)
            size = d.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            g = (g - eta * d / size).clamp(0.0, 1.0)
            path.append(g)
        attributions = torch.zeros_like(g)
        for j in range(n_steps):
            z = path[j].detach().requires_grad_(True)
            out = model(z)[:, target]
            seen.clear()
            (grad,) = torch.autograd.grad(out.sum(), z)
            attributions += (path[j] - path[j + 1]) * grad
    finally:
        handle.remove()
    return attributions.mean(0)


def dual_gradient_strategies(model: nn.Module, layer: nn.Module, refs: torch.Tensor,
                             target: int, device: torch.device, repeats: int) -> dict[str, Any]:
    """Seconds per call: forward + two backward passes vs forward + one batched backward."""
    seen: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, args, _o: seen.append(args[0]))
    rep_ref = torch.zeros(refs.shape[0], layer.in_features, device=device)
    targets = torch.full((refs.shape[0],), target, device=device)

    def graph() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = refs.detach().requires_grad_(True)
        f = select_target(model(z), targets)
        dist = (seen.pop().flatten(1) - rep_ref).pow(2).mean(1)
        return z, f, dist

    def two_backward() -> None:
        z, f, dist = graph()
        torch.autograd.grad(f.sum(), z, retain_graph=True)
        torch.autograd.grad(dist.sum(), z)

    def batched() -> None:
        z, f, dist = graph()
        both = torch.cat([f, dist])
        rows = f.shape[0]
        selectors = torch.zeros(2, 2 * rows, device=device)
        selectors[0, :rows], selectors[1, rows:] = 1.0, 1.0
        torch.autograd.grad(both, z, grad_outputs=selectors, is_grads_batched=True)

    try:
        contenders: dict[str, Callable[[], Any]] = {"two_backward": two_backward}
        try:
            batched()
            contenders["batched_grad_outputs"] = batched
        except Exception as error:  # vmap over backward lacks rules for some ops
            return {"two_backward_s": interleaved_medians(contenders, repeats, device)[
                "two_backward"], "batched_grad_outputs": f"unsupported: {error}"[:200]}
        medians = interleaved_medians(contenders, repeats, device)
        return {f"{name}_s": value for name, value in medians.items()}
    finally:
        handle.remove()


def bench_model(name: str, steps_list: list[int], repeats: int, device: torch.device
                ) -> dict[str, Any]:
    model, side = build(name, device)
    layer = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, side, side, generator=generator).to(device)
    refs = torch.rand(N_REFERENCES, 3, side, side, generator=generator).to(device)
    with torch.no_grad():
        target = int(model(x).argmax(1))
    report: dict[str, Any] = {"image_size": side, "references": N_REFERENCES, "target": target,
                              "dual_gradient": dual_gradient_strategies(
                                  model, layer, refs, target, device, max(3, repeats * 3))}
    # Over 256 rows: enough to rank the sizes.
    limit_batch, _ = best_batch(model, refs.repeat(32, 1, 1, 1), target, list(LIMIT_BATCHES),
                                device, backward_passes=2)
    report["limit_batch"] = limit_batch
    for steps in steps_list:
        # ResNet-18 on a CPU: one timed round at T=200 keeps the default run near 10 minutes.
        rounds = 1 if name == "resnet18" and device.type == "cpu" and steps >= 200 else repeats
        report[f"T={steps}"] = bench_steps(model, layer, x, refs, target, steps, limit_batch,
                                           rounds, device)
        print(f"[ig2 benchmark] {name} T={steps}: {json.dumps(report[f'T={steps}'])}",
              file=sys.stderr, flush=True)
    return report


def make_contenders(model: nn.Module, layer: nn.Module, x: torch.Tensor, refs: torch.Tensor,
                    target: int, steps: int, eta: float, limit_batch: int,
                    results: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    limit_points = refs.repeat(steps + 1, 1, 1, 1)  # (T + 1) x B rows

    def ours(rule: str) -> None:
        results[rule] = ig2(model, x, refs, target=target, n_steps=steps, step_size=eta,
                            rule=rule, clip=(0.0, 1.0))

    def naive() -> None:
        results["naive"] = naive_ig2_left(model, layer, x, refs, target, steps, eta)

    return {
        "ours_left": lambda: ours("left"),
        "ours_trapezoid": lambda: ours("trapezoid"),
        "naive_left": naive,
        "limit": lambda: forward_backward_rows(model, limit_points, limit_batch, target,
                                               backward_passes=2),
        "ig": lambda: integrated_gradients(model, x, target=target, n_steps=steps),
        "ours_middle": lambda: ours("middle"),
    }


def bench_steps(model: nn.Module, layer: nn.Module, x: torch.Tensor, refs: torch.Tensor,
                target: int, steps: int, limit_batch: int, repeats: int, device: torch.device
                ) -> dict[str, Any]:
    eta = (refs - x).flatten(1).norm(dim=1).mean().item() / steps  # = step_size="auto"
    results: dict[str, Any] = {}
    contenders = make_contenders(model, layer, x, refs, target, steps, eta, limit_batch, results)
    middle = contenders.pop("ours_middle")
    warm_up = make_contenders(model, layer, x, refs, target, 4, eta, limit_batch, {})
    warm_up.pop("ours_middle")
    seconds = interleaved_medians(contenders, repeats, device, warm_up)
    middle()
    gap = results["trapezoid"].f_inputs - results["trapezoid"].f_counterfactuals
    naive_gap = (results["naive"] - results["left"].attributions[0]).abs().max().item()
    return {
        "seconds": {k: round(v, 4) for k, v in seconds.items()},
        "ratio_vs_naive": round(seconds["ours_left"] / seconds["naive_left"], 3),
        "ratio_vs_limit": round(seconds["ours_trapezoid"] / seconds["limit"], 3),
        "ratio_vs_ig": round(seconds["ours_trapezoid"] / seconds["ig"], 3),
        "step_size": round(eta, 6),
        "relative_completeness_error": {
            rule: float(f"{float(results[rule].relative_delta[0]):.3g}")
            for rule in ("left", "trapezoid", "middle")},
        "abs_completeness_error": {
            rule: float(f"{float(results[rule].delta.abs()[0]):.3g}")
            for rule in ("left", "trapezoid", "middle")},
        "gap_f_x_minus_mean_f_gradcf": float(f"{float(gap[0]):.4g}"),
        "repeats": repeats,
        "max_abs_diff_vs_naive_left": float(f"{naive_gap:.3g}"),
        "forward_calls": {"ours": results["trapezoid"].forward_calls, "naive": 2 * steps + 1},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="T=64 only, fewer repeats")
    parser.add_argument("--models", default="cnn,resnet18")
    parser.add_argument("--out", default=None, help="also write the JSON to this file")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (1 is steadier on a shared, loaded machine)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = pick_device()
    steps_list = [64] if args.quick else [64, 200]
    repeats = 1 if args.quick else 3
    report: dict[str, Any] = {"benchmark": "ig2", "environment": environment(device),
                              "repeats": repeats, "models": {}}
    for name in args.models.split(","):
        report["models"][name] = bench_model(name.strip(), steps_list, repeats, device)
        # written after every model, so a cut-off run keeps what it measured
        text = dump_report(report, args.out)
        print(f"[ig2 benchmark] {name} done", file=sys.stderr, flush=True)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
