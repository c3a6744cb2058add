"""``python -m attribution_core explain``: evaluate explanations over many cases from a shell.

The input is a folder of images, a .zip of images or a .csv of texts / table rows (which one is
decided by the model's modality), or ``--bundled`` for the model's own held-out cases. The
report (JSON, HTML, safetensors maps) goes to ``--out``; stdout gets one line of JSON that a
script can parse, stderr gets progress. Bad input exits with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

from attribution_core.evaluation.command_common import (
    MAX_CSV_BYTES,
    MAX_FOLDER_BYTES,
    CommandError,
    expected_by_name,
    mask_files,
    read_limited,
    summary_line,
    zip_folder,
)
from attribution_core.evaluation.types import (
    ALL_METHODS,
    KNOWN_METHODS,
    OPTIONAL_METHODS,
    EvaluationInputError,
    EvaluationSettings,
    ImageItem,
    RowItem,
    TextItem,
)

EXIT_OK, EXIT_INPUT, EXIT_INTERRUPTED = 0, 2, 130
_ALIASES = {"smoothgrad": "SmoothGrad (IG)", "gxi": "Gradient x Input",
            "gradxinput": "Gradient x Input", "shap": "GradientSHAP"}


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def parse_methods(text: str) -> tuple[str, ...]:
    """``IG,IG2,Saliency`` -> canonical names; spelling and spaces do not matter."""
    by_key = {_key(m): m for m in KNOWN_METHODS} | _ALIASES
    chosen: list[str] = []
    for part in text.split(","):
        if not part.strip():
            continue
        method = by_key.get(_key(part))
        if method is None:
            raise CommandError(f"Unknown method {part.strip()!r}; choose from "
                               f"{', '.join(KNOWN_METHODS)} (comma-separated).")
        if method not in chosen:
            chosen.append(method)
    if not chosen:
        raise CommandError("--methods names no method; choose from " + ", ".join(KNOWN_METHODS))
    return tuple(chosen)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m attribution_core",
        description="Attribution tools: evaluate explanations, list models.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    explain = commands.add_parser(
        "explain", help="run IG, IG2 and comparison methods over many cases and write a report",
        description="Evaluate explanation methods on a model over many cases; write a JSON, "
                    "HTML and safetensors report and print a one-line JSON summary.")
    explain.add_argument("--model", required=True, help="model name (see the 'models' command)")
    source = explain.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", type=Path, help="folder or .zip of images (image models), "
                        ".csv of texts (text models) or of rows in raw units (tabular models); "
                        "with --engine ray also .parquet, and any size: read shard by shard")
    source.add_argument("--bundled", action="store_true",
                        help="use the model's bundled held-out cases instead of --input")
    explain.add_argument("--expected", type=Path,
                         help="image models: a folder of masks named <image stem>.png or "
                              "<stem>_mask.png; text/tabular models: a CSV with columns "
                              "name,expected (words or features separated by ';')")
    explain.add_argument("--methods", default=",".join(ALL_METHODS),
                         help=f"comma-separated, from: {', '.join(KNOWN_METHODS)} (default: "
                              f"all but {', '.join(OPTIONAL_METHODS)})")
    explain.add_argument("--n-cases", type=int, default=50,
                         help="how many cases to evaluate (default 50; the first N of --input)")
    defaults = EvaluationSettings()
    explain.add_argument("--ig-steps", type=int, default=defaults.ig_steps)
    explain.add_argument("--ig2-steps", type=int, default=defaults.ig2_steps)
    explain.add_argument("--seed", type=int, default=defaults.seed)
    explain.add_argument("--baseline", default=None,
                         help="attribution baseline kind (default: the model's; e.g. black, "
                              "blurred, mean for images; pad, mask for text; mean, median)")
    explain.add_argument("--removal", default=None,
                         help="what deletion/insertion put in place of removed units, when it "
                              "should differ from the baseline (a baseline kind)")
    explain.add_argument("--settings", type=Path, default=None,
                         help="a JSON file of every evaluation setting (the 'settings' object "
                              "of an evaluation.json); replaces --methods, --ig-steps, "
                              "--ig2-steps, --seed and --removal")
    explain.add_argument("--out", type=Path, default=Path("evaluation-report"),
                         help="folder for evaluation.json, .html and _attributions.safetensors")
    explain.add_argument("--device", choices=("cpu", "cuda"), default=None,
                         help="default: cuda when available, else cpu")
    from attribution_core.evaluation.cli_scale import add_scale_arguments

    add_scale_arguments(explain)
    commands.add_parser("models", help="list the registered models and whether they are ready")
    return parser


# -- inputs ------------------------------------------------------------------------------------

def attach_masks(items: Sequence[ImageItem], folder: Path, notes: list[str]
                 ) -> list[ImageItem]:
    """Masks from ``folder`` matched to images by file stem; greys above 127 are expected."""
    from attribution_core.evaluation.uploads_images import decode_mask
    from attribution_core.modalities.image import MAX_UPLOAD_BYTES, ImageInputError

    if not folder.is_dir():
        raise CommandError(f"--expected {folder} must be a folder of mask images for an "
                           "image model.")
    masks = mask_files(folder)
    attached: list[ImageItem] = []
    for item in items:
        path = masks.get(Path(item.name).stem)
        if path is None:
            attached.append(item)
            continue
        try:
            mask = decode_mask(read_limited(path, 40 * 2**20), max_bytes=MAX_UPLOAD_BYTES)
        except ImageInputError as error:
            notes.append(f"{path.name}: {error} {item.name} is kept without a mask.")
            attached.append(item)
            continue
        if mask.shape != (item.image.size[1], item.image.size[0]):
            notes.append(f"{path.name}: the mask is {mask.shape[1]}x{mask.shape[0]} pixels but "
                         f"{item.name} is {item.image.size[0]}x{item.image.size[1]}; not used.")
            attached.append(item)
            continue
        attached.append(replace(item, mask=mask))
    return attached


def _apply_expected(items: list[Any], path: Path, feature_names: Sequence[str] | None,
                    notes: list[str]) -> list[Any]:
    from attribution_core.evaluation.uploads import parse_expected_features, parse_expected_words

    wanted = expected_by_name(path)
    names = {item.name for item in items}
    unknown = sorted(set(wanted) - names)
    if unknown:
        notes.append(f"--expected names {len(unknown)} case(s) not in the input: "
                     + ", ".join(unknown[:5]) + ("…" if len(unknown) > 5 else ""))
    updated = []
    for item in items:
        if item.name not in wanted:
            updated.append(item)
        elif isinstance(item, TextItem):
            updated.append(replace(item, expected_words=parse_expected_words(wanted[item.name])))
        else:
            features = parse_expected_features(wanted[item.name], feature_names or ())
            updated.append(replace(item, expected_features=features))
    return updated


def load_items(loaded: Any, source: Path, expected: Path | None, notes: list[str]
               ) -> list[ImageItem] | list[TextItem] | list[RowItem]:
    """Raw items from --input for the model's modality (upload readers do the validation)."""
    from attribution_core.evaluation import uploads
    from attribution_core.evaluation.cases import feature_names

    modality = loaded.spec.modality
    if not source.exists():
        raise CommandError(f"--input {source} does not exist.")
    suffix = source.suffix.lower()
    if modality == "image":
        if source.is_dir():
            upload = uploads.read_image_zip(zip_folder(source))
        elif suffix == ".zip":
            upload = uploads.read_image_zip(read_limited(source, MAX_FOLDER_BYTES))
        else:
            raise CommandError(f"{loaded.spec.name} is an image model: --input must be a folder "
                               f"or a .zip of images, not {source.name}.")
        notes.extend(upload.skipped)
        items: list[Any] = list(upload.items)
        return attach_masks(items, expected, notes) if expected is not None else items
    if source.is_dir() or suffix != ".csv":
        what = "texts (a 'text' column)" if modality == "text" else "rows in raw units"
        raise CommandError(f"{loaded.spec.name} is a {modality} model: --input must be a .csv "
                           f"of {what}, not {source.name}.")
    data = read_limited(source, MAX_CSV_BYTES)
    names: tuple[str, ...] | None = None
    if modality == "text":
        text_upload = uploads.read_text_csv(data)
        notes.extend(text_upload.skipped)
        items = list(text_upload.items)
    else:
        names = feature_names(loaded)
        rows = uploads.read_rows_csv(data, names)
        notes.extend(rows.problems + rows.skipped)
        items = list(rows.items)
    return _apply_expected(items, expected, names, notes) if expected is not None else items


def build_cases(loaded: Any, args: argparse.Namespace, notes: list[str]) -> tuple[Any, ...]:
    from attribution_core.evaluation import cases as case_builders

    if args.bundled:
        build = case_builders.bundled_cases(loaded, args.n_cases, seed=args.seed,
                                            baseline=args.baseline, removal=args.removal)
    else:
        items = load_items(loaded, args.input, args.expected, notes)
        if len(items) > args.n_cases:
            notes.append(f"the input holds {len(items)} cases; the first {args.n_cases} are "
                         "evaluated (raise --n-cases for more)")
            items = items[:args.n_cases]
        builder: Callable[..., Any] = {"image": case_builders.image_cases,
                                       "text": case_builders.text_cases,
                                       "tabular": case_builders.tabular_cases
                                       }[loaded.spec.modality]
        build = builder(loaded, items, seed=args.seed, baseline=args.baseline,
                        removal=args.removal)
    notes.extend(build.skipped)
    if not build.cases:
        raise EvaluationInputError("No case could be built from the input: "
                                   + ("; ".join(notes[:5]) or "it is empty."))
    return build.cases


# -- output ------------------------------------------------------------------------------------

def _progress(done: int, total: int, message: str) -> None:
    print(f"[{done}/{total}] {message}", file=sys.stderr, flush=True)


class _StopOnInterrupt:
    """The first Ctrl-C asks the runner to stop after the current batch (on Ray: after the
    shards already running; the finished cases still make a report); a second one interrupts
    at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _StopOnInterrupt:
        # Only the main thread may set signal handlers; called from another thread (a job
        # runner, a test), the command runs without Ctrl-C handling.
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("Stopping after the work already started (Ctrl-C again to abort)…",
              file=sys.stderr)

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def run_explain(args: argparse.Namespace) -> int:
    import torch

    from attribution_core.evaluation.cli_scale import check_engine_arguments, settings_from_file
    from attribution_core.evaluation.report import write_report
    from attribution_core.evaluation.runner import evaluate
    from attribution_core.models import load_model

    if args.n_cases < 1:
        raise CommandError(f"--n-cases must be at least 1, got {args.n_cases}.")
    complaint = check_engine_arguments(args)
    if complaint is not None:
        raise CommandError(complaint)
    if args.device == "cuda" and args.engine == "local" and not torch.cuda.is_available():
        raise CommandError("--device cuda was asked for, but no CUDA device is available here; "
                           "use --device cpu.")
    settings = EvaluationSettings(methods=parse_methods(args.methods), ig_steps=args.ig_steps,
                                  ig2_steps=args.ig2_steps, seed=args.seed,
                                  removal=args.removal)
    if args.settings is not None:
        settings = settings_from_file(args.settings, read_limited(args.settings, 2**20))
        args.seed, args.removal = settings.seed, settings.removal  # the cases use them too
    if args.engine == "ray":
        return _run_on_ray(args, settings)
    started = time.perf_counter()
    loaded = load_model(args.model, device=args.device)
    notes: list[str] = []
    cases = build_cases(loaded, args, notes)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"Evaluating {len(cases)} case(s) of {loaded.spec.name} with "
          f"{', '.join(settings.methods)}…", file=sys.stderr, flush=True)
    with _StopOnInterrupt() as stop:
        result = evaluate(loaded, cases, settings, progress=_progress,
                          should_stop=lambda: stop.requested)
    if notes:
        result = replace(result, notes=result.notes + tuple(notes))
    files = write_report(result, args.out, extra={
        "command": "explain", "source": "bundled" if args.bundled else str(args.input),
        "total_seconds": time.perf_counter() - started})
    print(json.dumps(summary_line(
        model_name=result.model_name, n_cases=len(result.cases), n_requested=result.n_requested,
        cancelled=result.cancelled, seconds=result.seconds, summaries=result.summaries(),
        files=files)), flush=True)
    return EXIT_INTERRUPTED if result.cancelled else EXIT_OK


def _run_on_ray(args: argparse.Namespace, settings: EvaluationSettings) -> int:
    from attribution_core.evaluation.cli_scale import run_explain_sharded, worker_error

    # Ray prints worker failures and restarts on stdout; stdout is kept for the summary line.
    with _StopOnInterrupt() as stop, contextlib.redirect_stdout(sys.stderr):
        try:
            line = run_explain_sharded(args, settings, lambda: stop.requested)
        except Exception as error:
            raise worker_error(error) from error
    print(json.dumps(line), flush=True)
    return EXIT_INTERRUPTED if line["cancelled"] else EXIT_OK


def run_models() -> int:
    from attribution_core.models.__main__ import main as list_models

    return list_models()


def main(argv: Sequence[str] | None = None) -> int:
    from attribution_core.evaluation.ray_engine import RayUnavailable
    from attribution_core.modalities.image import ImageInputError
    from attribution_core.models import ModelLoadError

    args = build_parser().parse_args(argv)
    try:
        if args.command == "models":
            return run_models()
        return run_explain(args)
    except (CommandError, EvaluationInputError, ModelLoadError, ImageInputError,
            RayUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
    except (OSError, zipfile.BadZipFile, UnicodeDecodeError) as error:
        print(f"error: could not read the input: {error}", file=sys.stderr)
    except ValueError as error:  # other validation in the readers and case builders
        print(f"error: {error}", file=sys.stderr)
    return EXIT_INPUT


def console() -> None:
    """The ``attribution-core`` console script: ``main`` with the process's arguments."""
    import sys

    sys.exit(main(sys.argv[1:]))
