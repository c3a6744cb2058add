"""The exact fast path and the preview against the eager fp32 forward+backward limit, in one run.

    python -m benchmarks.fast_paths [--quick] [--models cnn,text,resnet18] [--compile]
                                    [--threads N] [--threads-sweep] [--out FILE]

Prints JSON with rows ``cnn_8x8``, ``text_encoder_64`` and ``resnet18_224``:
- ``eager_limit_seconds``: forward + backward of the path points with the model as loaded
  (parameters requiring grad, contiguous layout): what eager fp32 costs at the least;
- ``exact_ratio_vs_eager_limit``: our exact IG (frozen parameters, channels_last where the
  measurement adopts it) over that limit; its map equals fp32 eager within 1e-5 (the tests);
- ``preview_ratio_vs_exact``: time to the preview over time to the exact result, with the
  preview's deviation from the exact map (relative L2, rank correlation, top-10 overlap);
- with ``--compile``: torch.compile's compile time and its exact time.
Times are medians of interleaved repeats in one process; absolute seconds are context only.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from attribution_core import integrated_gradients, pick_device
from attribution_core.preview import bf16_preview_supported, preview_deviation, preview_ig
from attribution_core.quadrature import quadrature
from attribution_core.tuning import best_thread_count, compile_for_attribution, prefer_channels_last
from benchmarks.common import (
    dump_report,
    environment,
    forward_backward_rows,
    interleaved_medians,
    path_points,
)
from benchmarks.ig_vs_captum import SmallCnn, TextEncoder

Maker = Callable[[torch.Generator], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def _cases(device: torch.device, names: list[str]) -> list[tuple[str, nn.Module, Maker, int]]:
    import torchvision

    torch.manual_seed(0)
    cases: list[tuple[str, nn.Module, Maker, int]] = []
    if "cnn" in names:
        cases.append(("cnn_8x8", SmallCnn().to(device).eval(),
                      lambda g: (torch.rand(1, 1, 8, 8, generator=g).to(device), {}), 64))
    if "text" in names:
        def text(g: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            return (0.5 * torch.randn(1, 64, 384, generator=g)).to(device), {
                "attention_mask": torch.ones(1, 64, dtype=torch.long, device=device)}
        cases.append(("text_encoder_64", TextEncoder().to(device).eval(), text, 16))
    if "resnet18" in names:
        cases.append(("resnet18_224", torchvision.models.resnet18(weights=None).to(device).eval(),
                      lambda g: (torch.rand(1, 3, 224, 224, generator=g).to(device), {}), 16))
    return cases


def _row(name: str, model: nn.Module, make: Maker, batch: int, n_steps: int, repeats: int,
         device: torch.device, compile_model: bool, threads_sweep: bool = False
         ) -> dict[str, Any]:
    x, kwargs = make(torch.Generator().manual_seed(1))
    baseline = torch.zeros_like(x)
    target = 1
    points = path_points(x, baseline, torch.tensor(quadrature("gausslegendre", n_steps).alphas,
                                                   device=device))
    eager = model
    fast = copy.deepcopy(model)
    channels_last = prefer_channels_last(fast, points[:batch], target=target)
    fast_x = x.contiguous(memory_format=torch.channels_last) if channels_last else x

    def exact() -> Any:
        return integrated_gradients(fast, fast_x, baseline, target=target, n_steps=n_steps,
                                    batch_size=batch, forward_kwargs=kwargs)

    def preview() -> Any:
        return preview_ig(fast, fast_x, baseline, target, n_steps, device, forward_kwargs=kwargs)

    contenders: dict[str, Callable[[], Any]] = {
        "eager_limit": lambda: forward_backward_rows(eager, points, batch, target, kwargs),
        "exact": exact,
        "preview": preview,
    }
    compiled_row: dict[str, Any] = {}
    if compile_model:
        compiled, seconds, why = compile_for_attribution(copy.deepcopy(fast), points[:batch],
                                                         target, kwargs)
        compiled_row["compile_seconds"] = round(seconds, 3)
        if compiled is None:
            compiled_row["compile_failed"] = why
        else:
            contenders["compiled"] = lambda: integrated_gradients(
                compiled, fast_x, baseline, target=target, n_steps=n_steps, batch_size=batch,
                forward_kwargs=kwargs)
            contenders["compiled"]()  # shapes of the last chunk compile here, not in a timing
    # Interleaved, so that machine noise hits every contender alike.
    medians = interleaved_medians(contenders, repeats, device)
    shown, answer = preview(), exact()
    deviation = preview_deviation(shown.result.attributions, answer.attributions)
    row: dict[str, Any] = {
        "model": name, "n_steps": n_steps, "batch_size": batch,
        "channels_last": channels_last,
        "preview_kind": shown.kind, "preview_steps": shown.n_steps,
        "seconds": {k: round(v, 5) for k, v in medians.items()},
        "eager_limit_seconds": round(medians["eager_limit"], 5),
        "exact_ratio_vs_eager_limit": round(medians["exact"] / medians["eager_limit"], 3),
        "preview_ratio_vs_exact": round(medians["preview"] / medians["exact"], 3),
        "preview_relative_l2": round(deviation.relative_l2, 5),
        "preview_rank_correlation": round(deviation.rank_correlation, 5),
        "preview_top10_overlap": deviation.top_k_overlap,
        "repeats": repeats,
    }
    row.update(compiled_row)
    if threads_sweep:
        default = torch.get_num_threads()
        chosen, measured = best_thread_count(exact, sorted({1, default}), repeats=1)
        row["threads_seconds"] = {str(k): round(v, 5) for k, v in measured.items()}
        row["threads_chosen"] = chosen
        torch.set_num_threads(default)
    if "compiled" in medians:
        row["compiled_ratio_vs_eager_limit"] = round(medians["compiled"] / medians["eager_limit"],
                                                     3)
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats (smoke)")
    parser.add_argument("--models", default="cnn,text,resnet18")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--threads-sweep", action="store_true",
                        help="also time the exact path at 1 thread and at torch's default")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device()
    report: dict[str, Any] = {"benchmark": "fast_paths", "environment": environment(device),
                              "bf16_preview": bf16_preview_supported(device), "rows": []}
    with torch.inference_mode(False):
        for name, model, make, batch in _cases(device, args.models.split(",")):
            n_steps = 16 if args.quick else 64
            repeats = 1 if args.quick else (3 if name != "resnet18_224" else 2)
            report["rows"].append(_row(name, model, make, min(batch, n_steps), n_steps, repeats,
                                       device, args.compile, args.threads_sweep))
            print(json.dumps(report["rows"][-1]), file=sys.stderr, flush=True)
    print(dump_report(report, args.out))
    return report


if __name__ == "__main__":
    main()
