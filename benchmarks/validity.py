"""IG, IG2 and the comparison methods against ground truth, on benchmarks others defined.

    PYTHONPATH=. python -m benchmarks.validity [--quick] [--write-docs] [--threads N]
        [--n-cases N] [--image-cases N] [--no-images | --no-tabular] [--out FILE]

Prints one JSON object with a list ``rows``: per (benchmark, dataset, rho, method) the metric
means over cases, ``ci95`` (per metric, seeded 95 % bootstrap interval of the mean) and
``n_cases``. Tabular part: the xai-bench Gaussian benchmarks against exact Shapley values
(:mod:`attribution_core.validity.tabular_suite`); image part: shapes scenes on four
backgrounds and the planted-cue texts against their masks
(:mod:`attribution_core.validity.image_suite`). ``--quick``: 40 tabular cases per setting and
12 scenes per background and 6 sentences (full: 100, 32, 20). ``--write-docs`` rewrites
docs/VALIDITY.md and its SVG plot (the whole suite only). ``--no-tabular`` runs the image and
text part alone, with IG2's path-settings calibration (``image_models[0].ig2_path_settings``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from attribution_core.validity.report import validity_markdown
from attribution_core.validity.tabular_methods import (
    GRADIENT_SHAP_SD,
    IG2_REFERENCES,
    IG2_STEPS,
    IG_STEPS,
    SMOOTHGRAD_SD,
    UNIFORM_DRAWS,
)
from attribution_core.validity.tabular_suite import TabularSettings, run_tabular

DOCS = Path(__file__).resolve().parent.parent / "docs"
QUICK_TABULAR_CASES = 40
FULL_TABULAR_CASES = 100
QUICK_IMAGE_CASES = 12
FULL_IMAGE_CASES = 32
QUICK_TEXT_CASES = 6
FULL_TEXT_CASES = 20
METHOD_NOTE = (
    f"IG: {IG_STEPS} Gauss-Legendre steps; IG(mean) from the training mean, IG(zeros) from 0, "
    f"IG(uniform x{UNIFORM_DRAWS}) averaged over {UNIFORM_DRAWS} baselines uniform in the "
    "training box; ExpectedGradients: 64 samples over the training rows. IG2: "
    f"{IG2_REFERENCES} references, {IG2_STEPS} path steps (or as named), automatic eta, "
    "representation = the last hidden layer; random = random training rows, far targets = a "
    "draw among the quarter of rows whose targets are farthest from the prediction, nearest "
    "far targets = the nearest of those. Saliency |df/dx|; SmoothGrad(IG): 16 samples, sd "
    f"{SMOOTHGRAD_SD}, IG from the mean; GradientSHAP: training rows, sd {GRADIENT_SHAP_SD}.")


def _progress(done: int, total: int, message: str) -> None:
    print(f"[{done}/{total}] {message}", file=sys.stderr, flush=True)


def run(quick: bool, n_cases: int | None, image_cases: int | None, images: bool,
        settings: TabularSettings | None = None, tabular_part: bool = True) -> dict[str, Any]:
    """The suite's JSON record; ``settings`` replaces the tabular defaults (tests)."""
    started = time.perf_counter()
    settings = settings or TabularSettings(
        n_cases=n_cases or (QUICK_TABULAR_CASES if quick else FULL_TABULAR_CASES),
        single_thread_training=True)  # a process of its own: its thread count is its own
    rows: list[dict[str, Any]] = []
    seconds: dict[str, float] = {}
    models: list[Any] = []
    if tabular_part:
        tabular = run_tabular(settings, progress=_progress)
        rows = [row.as_json() for row in tabular.rows]
        seconds["tabular"] = round(tabular.seconds, 1)
        models = list(tabular.models)
    record: dict[str, Any] = {"benchmark": "validity", "quick": quick}
    if images:
        from attribution_core.validity.image_suite import IMAGE_NOTE, run_images

        count = image_cases or (QUICK_IMAGE_CASES if quick else FULL_IMAGE_CASES)
        texts = QUICK_TEXT_CASES if quick else FULL_TEXT_CASES
        image = run_images(count, texts, seed=0, progress=_progress)
        rows += [row.as_json() for row in image.rows]
        seconds["images"] = round(image.seconds, 1)
        record["image_models"] = list(image.models)
        record["image_note"] = IMAGE_NOTE
    seconds["total"] = round(time.perf_counter() - started, 1)
    record.update({
        "settings": {"tabular_cases": settings.n_cases,
                     "conditional_samples": settings.conditional_samples,
                     "seed": settings.seed},
        "models": models, "seconds": seconds, "method_note": METHOD_NOTE,
        "environment": {"device": "cpu", "threads": torch.get_num_threads(),
                        "torch": torch.__version__, "python": platform.python_version()},
        "rows": rows})
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--n-cases", type=int, default=None)
    parser.add_argument("--image-cases", type=int, default=None)
    parser.add_argument("--no-images", action="store_true")
    parser.add_argument("--no-tabular", action="store_true",
                        help="the image and text part only (not with --write-docs)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.no_tabular and (args.write_docs or args.no_images):
        parser.error("--no-tabular runs the image part alone: without --write-docs and "
                     "--no-images")
    record = run(args.quick, args.n_cases, args.image_cases, not args.no_images,
                 tabular_part=not args.no_tabular)
    text = json.dumps(record, indent=1)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    if args.write_docs:
        command = "PYTHONPATH=. python -m benchmarks.validity --write-docs" + \
            (" --quick" if args.quick else "")
        markdown, svg = validity_markdown(record, command)
        DOCS.mkdir(exist_ok=True)
        (DOCS / "VALIDITY.md").write_text(markdown)
        (DOCS / "validity_shapley_corr.svg").write_text(svg)


if __name__ == "__main__":
    main()
