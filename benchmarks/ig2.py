"""IG2: our core vs the reference code's structure vs the forward + backward limit, in one run.

    PYTHONPATH=. python -m benchmarks.ig2 [--quick] [--threads N] [--repeats N]
        [--models shapes_cnn,minilm,resnet18] [--coverage-runs N] [--out FILE]

Prints JSON (``definitions`` states every ratio). Contenders run round-robin in one process
(medians of repeats), so machine noise hits all alike; absolute seconds are context only. N
explicands x B = 8 references are one batched path (rows = N x B per call). Runs on CUDA when
present (more explicands and steps there), else on the CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from typing import Any

import torch

from attribution_core import ig2, integrated_gradients, pick_device
from attribution_core.methods.ig2 import auto_step_size
from attribution_core.methods.ig2_preview import preview_ig2
from benchmarks.common import dump_report, environment, interleaved_medians, timed
from benchmarks.ig2_setup import Workload, build_workload, limit_rows, reference_code_ig2

N_REFERENCES = 8
DEFINITIONS = {
    "ratio_vs_naive": "ours (rule='left', the reference code's rule; same attributions, "
                      "max_rel_diff_vs_naive) / the reference code's structure as its example "
                      "runs it: per explicand, 1 call for the references + T path calls "
                      "(forward, loss.backward(): its model's parameters require gradients, so "
                      "their gradients are computed too) + T integration calls (forward, "
                      "input gradient), B rows each",
    "ratio_vs_naive_input_only": "the same, against that structure with input gradients only "
                                 "(its best case: 2T + 1 calls of forward + one backward)",
    "ratio_vs_limit": "ours (library defaults: trapezoid, no halving) / the limit: (T + 1) x N "
                      "x B rows of one forward and the two backward passes IG2 needs per path "
                      "point (df/dz and dD/dz), parameters frozen, at the fastest measured "
                      "batch size",
    "ratio_vs_one_backward_limit": "the same ours / one forward and one backward of those rows",
    "ratio_vs_limit_with_convergence": "ours with the convergence estimate (halving=True, what "
                                       "the pages run) / the limit per row x its rows ((T + 1) "
                                       "+ (T // 2 + 1)) x N x B",
    "preview_ratio_vs_exact": "the IG2 preview (a quarter of the references, bf16 autocast "
                              "where the hardware has bf16) / ours (library defaults)",
    "preview_ratio_vs_exact_with_convergence": "the preview / ours with halving=True",
    "ratio_vs_ig": "ours (library defaults) / Integrated Gradients (our core, Gauss-Legendre) "
                   "at the same T on the same explicands",
    "early_stop_ratio_vs_exact": "ours with early_stop=True (opt-in: a path stops once its "
                                 "distance stops falling; changes the result by "
                                 "early_stop_max_rel_change) / ours (library defaults)",
    "coverage": "share of runs whose convergence estimate is at or above the true per-feature "
                "error max_i |A_i - A_i(4T steps, 4B references)| / max_i |A_i|",
}


def bench_model(name: str, steps: int, n_explicands: int, repeats: int, device: torch.device
                ) -> dict[str, Any]:
    work = build_workload(name, device, n_explicands, N_REFERENCES)
    report: dict[str, Any] = {"note": work.note, "explicands": n_explicands,
                              "references": N_REFERENCES, "T": steps,
                              "input_shape": list(work.x.shape[1:])}
    eta = auto_step_size(work.x, work.refs, steps, "l2")
    batch = _best_limit_batch(work, steps, device)
    results: dict[str, Any] = {}
    contenders = _contenders(work, steps, eta, batch, results, device)
    warm = _contenders(work, 2, auto_step_size(work.x, work.refs, 2, "l2"), batch, {}, device)
    seconds = interleaved_medians(contenders, repeats, device, warm)
    rows = (steps + 1) * n_explicands * N_REFERENCES
    rows_conv = rows + (steps // 2 + 1) * n_explicands * N_REFERENCES
    exact, left = results["ours_trapezoid"], results["ours_left"]
    scale = float(left.attributions.abs().max())
    report.update({
        "seconds": {k: round(v, 4) for k, v in seconds.items()},
        "limit_batch": batch, "rows": rows,
        "ratio_vs_naive": round(seconds["ours_left"] / seconds["naive_reference"], 3),
        "ratio_vs_naive_input_only": round(seconds["ours_left"] / seconds["naive_input_only"],
                                           3),
        "ratio_vs_limit": round(seconds["ours_trapezoid"] / seconds["limit"], 3),
        "ratio_vs_one_backward_limit": round(seconds["ours_trapezoid"] /
                                             seconds["limit_one_backward"], 3),
        "ratio_vs_limit_with_convergence": round(
            seconds["ours_with_convergence"] / (seconds["limit"] * rows_conv / rows), 3),
        "preview_ratio_vs_exact": round(seconds["preview"] / seconds["ours_trapezoid"], 3),
        "preview_ratio_vs_exact_with_convergence": round(
            seconds["preview"] / seconds["ours_with_convergence"], 3),
        "ratio_vs_ig": round(seconds["ours_trapezoid"] / seconds["ig"], 3),
        "early_stop_ratio_vs_exact": round(seconds["ours_early_stop"] /
                                           seconds["ours_trapezoid"], 3),
        "early_stop_steps_taken_share": round(float(
            results["ours_early_stop"].steps_taken.double().mean()) / steps, 3),
        "early_stop_max_rel_change": float(f"{_relative_change(results['ours_early_stop'], exact):.3g}"),  # noqa: E501
        "max_rel_diff_vs_naive": float(f"{float((results['naive'] - left.attributions).abs().max()) / max(scale, 1e-300):.3g}"),  # noqa: E501
        "forward_calls": {"ours": exact.forward_calls,
                          "naive": n_explicands * (2 * steps + 1)},
        "relative_completeness_error": float(f"{float(exact.relative_delta.median()):.3g}"),
        "convergence_median": float(f"{float(results['ours_with_convergence'].convergence.median()):.3g}"),  # noqa: E501
        "path_reach_median": float(f"{float(exact.path_reach.median()):.3g}"),
        "preview": results["preview"].label,
        "repeats": repeats,
    })
    return report


def _relative_change(a: Any, b: Any) -> float:
    """max |A_a - A_b| / max |A_b| over all explicands."""
    return float((a.attributions - b.attributions).abs().max() /
                 b.attributions.abs().max().clamp_min(1e-300))


def _contenders(work: Workload, steps: int, eta: torch.Tensor, batch: int,
                results: dict[str, Any], device: torch.device) -> dict[str, Callable[[], Any]]:
    rows = (steps + 1) * work.x.shape[0] * N_REFERENCES

    def ours(label: str, **options: Any) -> Callable[[], None]:
        def run() -> None:
            results[label] = ig2(work.forward, work.x, work.refs,
                                 representation=work.representation, target=work.targets,
                                 n_steps=steps, forward_kwargs=dict(work.kwargs) or None,
                                 reference_kwargs=dict(work.ref_kwargs) or None,
                                 clip=work.clip, **options)
        return run

    def naive(parameter_gradients: bool, label: str) -> Callable[[], None]:
        def run() -> None:
            results[label] = reference_code_ig2(work, steps, eta, parameter_gradients)
        return run

    def preview() -> None:
        results["preview"] = preview_ig2(
            work.forward, work.x, work.refs, device, representation=work.representation,
            target=work.targets, n_steps=steps, forward_kwargs=dict(work.kwargs) or None,
            reference_kwargs=dict(work.ref_kwargs) or None, clip=work.clip)

    def ig() -> None:
        integrated_gradients(work.forward, work.x, target=work.targets, n_steps=steps,
                             forward_kwargs=dict(work.kwargs) or None)

    return {
        "ours_left": ours("ours_left", rule="left"),
        "naive_reference": naive(True, "naive"),
        "naive_input_only": naive(False, "naive_input_only"),
        "ours_trapezoid": ours("ours_trapezoid"),
        "ours_with_convergence": ours("ours_with_convergence", halving=True),
        "ours_early_stop": ours("ours_early_stop", early_stop=True),
        "limit": lambda: limit_rows(work, rows, batch, backward_passes=2),
        "limit_one_backward": lambda: limit_rows(work, rows, batch, backward_passes=1),
        "preview": preview,
        "ig": ig,
    }


def _best_limit_batch(work: Workload, steps: int, device: torch.device) -> int:
    """The fastest batch size for the limit among a few candidates (a short timed probe)."""
    per_call = work.x.shape[0] * N_REFERENCES
    total = (steps + 1) * per_call
    candidates = [per_call, 2 * per_call] if device.type == "cpu" else \
        [per_call, 64, 256, 1024]
    candidates = sorted({min(c, total) for c in candidates})
    probe = min(total, 2 * max(candidates))
    timings = {}
    for batch in candidates:
        limit_rows(work, batch, batch, 2)  # warm-up at this size
        timings[batch] = timed(lambda b=batch: limit_rows(work, probe, b, 2), device)
    return min(timings, key=timings.__getitem__)


def coverage_row(runs: int, device: torch.device) -> dict[str, Any]:
    """The convergence estimate against a 4x-steps, 4x-references run (shapes CNN, the image
    page's defaults: 32 steps, 8 references, the model's eta)."""
    from attribution_core.models.registry import load_model
    from attribution_core.validity.ig2_coverage import convergence_coverage

    loaded = load_model("shapes_cnn", device)
    found = convergence_coverage(loaded, runs, n_steps=32, n_references=N_REFERENCES)
    ratios = [r.estimate / r.true_error for r in found.runs if r.true_error > 0]
    return {"model": "shapes_cnn", "runs": runs, "T": 32, "references": N_REFERENCES,
            "reference_run": "4T steps at eta / 4, 4B other references drawn independently",
            "coverage": round(found.coverage, 3),
            "median_estimate_over_true": round(statistics.median(ratios), 3),
            "median_true_error": round(statistics.median(r.true_error for r in found.runs), 4),
            "median_estimate": round(statistics.median(r.estimate for r in found.runs), 4),
            "steps_part_coverage_of_steps_error": round(found.steps_coverage, 3),
            "seconds": round(found.seconds, 1)}


def _size(name: str, gpu: bool, quick: bool) -> tuple[int, int]:
    """(T, explicands) per model: a GPU takes 16 explicands (128 rows a call) and 32 or 64
    steps; a CPU core pays ~0.4 s per ResNet-18 row (forward + 2 backward) and ~25 ms per
    MiniLM sentence row, so those run one explicand and fewer steps there."""
    if gpu:
        return (32 if quick else 64), 16
    if name == "resnet18":
        return (4 if quick else 8), 1
    if name == "minilm":
        return (8 if quick else 16), 1
    return (16 if quick else 32), 4


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps, runs and repeats")
    parser.add_argument("--models", default="shapes_cnn,minilm,resnet18")
    parser.add_argument("--coverage-runs", type=int, default=None,
                        help="runs of the convergence coverage row (40; --quick 10; 0: none)")
    parser.add_argument("--out", default=None, help="also write the JSON to this file")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed rounds per contender (median; default 3, --quick 1)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = pick_device()
    gpu = device.type == "cuda"
    repeats = args.repeats or (1 if args.quick else 5)  # ResNet-18 on a CPU: at most 3
    report: dict[str, Any] = {"benchmark": "ig2", "environment": environment(device),
                              "definitions": DEFINITIONS, "models": {}}
    text = dump_report(report, args.out)
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        steps, explicands = _size(name, gpu, args.quick)
        heavy = name == "resnet18" and not gpu and args.repeats is None
        rounds = min(repeats, 3) if heavy else repeats
        report["models"][name] = bench_model(name, steps, explicands, rounds, device)
        text = dump_report(report, args.out)  # a cut-off run keeps what it measured
        print(f"[ig2 benchmark] {name}: {json.dumps(report['models'][name])}", file=sys.stderr,
              flush=True)
    runs = args.coverage_runs if args.coverage_runs is not None else (10 if args.quick else 40)
    if runs > 0:
        report["convergence_coverage"] = coverage_row(runs, device)
        text = dump_report(report, args.out)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
