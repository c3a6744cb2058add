"""Image and text ground truth that favours no baseline.

Images: shapes scenes (the class is the kind of the single red shape; its mask is the ground
truth) on dark, bright, textured and noisy backgrounds, explained on ``shapes_backgrounds_cnn``
(trained on all four; ``python -m attribution_core.train.shapes_backgrounds_cnn``). On a dark
background a black baseline already equals the background, which favours IG from black; on the
others it does not. Texts: the planted-cue sentences on ``cue_transformer`` (the cue word and a
negating "not" are the ground truth), through the Evaluate runner.

Per case: ``mask_share`` (the share of positive attribution on the ground truth) and
``pointing_game`` (1 when the largest score falls on it), after summing over channels
(images) or embedding dimensions (tokens).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from attribution_core.datasets.shapes import BACKGROUNDS, KINDS, generate_shapes
from attribution_core.methods.gradient_shap import gradient_shap
from attribution_core.methods.gradient_x_input import gradient_x_input
from attribution_core.methods.ig import integrated_gradients
from attribution_core.methods.ig2 import ig2
from attribution_core.methods.ig2_tuning import DEFAULTS, PathSetting
from attribution_core.methods.saliency import saliency
from attribution_core.methods.smoothgrad import smoothgrad
from attribution_core.metrics_checks import agreement
from attribution_core.modalities.image import gaussian_blur
from attribution_core.models.architectures import ShapesCNN
from attribution_core.models.assets import read_metadata, weights_path
from attribution_core.references import select_references
from attribution_core.validity import ig2_settings
from attribution_core.validity.rows import BenchmarkRow, Progress, summarise

MODEL_NAME = "shapes_backgrounds_cnn"
POOL = (400, 12)  # reference / data pool: (scenes, generator seed), backgrounds in turn
CASE_SEED = 13
IG_STEPS = 64
IG2_REFERENCES = 16
IG2_STEPS = 64
NOISE_DRAWS = 4
BEST_PATH = "IG2(random, best path settings)"
IMAGE_NOTE = (
    "Shapes scenes (the class is the kind of the single red shape; its mask is the ground "
    "truth) on four backgrounds, explained on a CNN trained on all four "
    "(`python -m attribution_core.train.shapes_backgrounds_cnn`); planted-cue sentences on "
    "the cue transformer (the cue and a negating 'not' are the ground truth), through the "
    "Evaluate runner with its defaults (IG 32 steps from the pad embedding, IG2 32 steps with "
    "4 other-class references). Image methods: IG 64 Gauss-Legendre steps; IG2 16 references, "
    "64 steps, automatic eta, clipped to [0, 1]; random = any training scenes, other class = "
    "scenes of another class, nearest other class = the 16 nearest of those in pixel "
    "space; best path settings = random references with the eta / steps / layer whose paths "
    "got closest to their references on 8 calibration scenes (table below). share on "
    "mask: the share of positive attribution on the ground truth (random maps score the "
    "mask's area share); pointing game: the top pixel or token lies on it. "
    "Mean over cases [95 % bootstrap interval].")


@dataclass(frozen=True)
class ImageResult:
    rows: tuple[BenchmarkRow, ...]
    models: tuple[dict[str, object], ...]
    seconds: float


@dataclass(frozen=True)
class ImageContext:
    model: nn.Module
    x: torch.Tensor  # [B, 3, 32, 32]
    labels: torch.Tensor  # [B] the explained class
    pool_x: torch.Tensor
    pool_labels: torch.Tensor
    seed: int
    ig2_setting: PathSetting = DEFAULTS  # the path diagnostic's choice (ig2_settings)


def load_backgrounds_cnn() -> nn.Module:
    path = weights_path(MODEL_NAME)
    if not path.is_file():
        raise FileNotFoundError(f"{path.name} is missing; train it with "
                                f"python -m attribution_core.train.{MODEL_NAME}")
    from safetensors.torch import load_file

    model = ShapesCNN(len(KINDS))
    model.load_state_dict(load_file(str(path)))
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def _ig(baseline: Callable[[ImageContext], torch.Tensor]) -> Callable[[ImageContext], torch.Tensor]:
    def run(ctx: ImageContext) -> torch.Tensor:
        return integrated_gradients(ctx.model, ctx.x, baselines=baseline(ctx), target=ctx.labels,
                                    n_steps=IG_STEPS).attributions
    return run


def _blurred(ctx: ImageContext) -> torch.Tensor:
    return torch.stack([gaussian_blur(image.double(), 2.0).float() for image in ctx.x])


def _ig_noise(ctx: ImageContext) -> torch.Tensor:
    generator = torch.Generator().manual_seed(ctx.seed)
    total = torch.zeros_like(ctx.x)
    for _ in range(NOISE_DRAWS):
        base = torch.rand(ctx.x.shape, generator=generator)
        total += integrated_gradients(ctx.model, ctx.x, baselines=base, target=ctx.labels,
                                      n_steps=IG_STEPS).attributions
    return total / NOISE_DRAWS


def _references(ctx: ImageContext, policy: str) -> torch.Tensor:
    rows = []
    for case in range(ctx.x.shape[0]):
        seed = ctx.seed * 100_003 + case
        if policy == "random":
            pick = torch.randperm(ctx.pool_x.shape[0],
                                  generator=torch.Generator().manual_seed(seed))[:IG2_REFERENCES]
            rows.append(ctx.pool_x[pick])
        elif policy == "other":
            rows.append(select_references(ctx.pool_x, ctx.pool_labels, int(ctx.labels[case]),
                                          k=IG2_REFERENCES, seed=seed).inputs)
        else:  # nearest other-class samples in pixel space
            others = torch.nonzero(ctx.pool_labels != ctx.labels[case]).reshape(-1)
            gaps = (ctx.pool_x[others] - ctx.x[case]).flatten(1).norm(dim=1)
            rows.append(ctx.pool_x[others[torch.argsort(gaps, stable=True)[:IG2_REFERENCES]]])
    return torch.stack(rows)


def _ig2_best_path(ctx: ImageContext) -> torch.Tensor:
    """IG2(random) with the settings the path diagnostic chose on the calibration scenes."""
    return ig2_settings.run_setting(ctx.model, ctx.x, _references(ctx, "random"), ctx.labels,
                                    ctx.ig2_setting, IG2_STEPS).attributions


def _ig2(policy: str) -> Callable[[ImageContext], torch.Tensor]:
    def run(ctx: ImageContext) -> torch.Tensor:
        return ig2(ctx.model, ctx.x, _references(ctx, policy), target=ctx.labels,
                   n_steps=IG2_STEPS, clip=(0.0, 1.0)).attributions
    return run


IMAGE_METHODS: tuple[tuple[str, Callable[[ImageContext], torch.Tensor]], ...] = (
    ("IG(black)", _ig(lambda ctx: torch.zeros_like(ctx.x))),
    ("IG2(random)", _ig2("random")),
    (BEST_PATH, _ig2_best_path),
    ("IG(white)", _ig(lambda ctx: torch.ones_like(ctx.x))),
    ("IG(blurred)", _ig(_blurred)),
    ("IG(dataset mean)", _ig(lambda ctx: ctx.pool_x.mean(0, keepdim=True).expand_as(ctx.x))),
    (f"IG(uniform noise x{NOISE_DRAWS})", _ig_noise),
    ("ExpectedGradients(data)", lambda ctx: gradient_shap(
        ctx.model, ctx.x, baselines=ctx.pool_x, target=ctx.labels, n_samples=64,
        seed=ctx.seed).attributions),
    ("IG2(other class)", _ig2("other")),
    ("IG2(nearest other class)", _ig2("nearest")),
    ("Saliency", lambda ctx: saliency(ctx.model, ctx.x, target=ctx.labels,
                                      abs=True).attributions),
    ("Gradient x input", lambda ctx: gradient_x_input(ctx.model, ctx.x,
                                                      target=ctx.labels).attributions),
    ("SmoothGrad(IG black)", lambda ctx: smoothgrad(
        ctx.model, ctx.x, baselines=None, target=ctx.labels, n_samples=8, stdev=0.15,
        seed=ctx.seed, n_steps=32).attributions),
    ("GradientSHAP", lambda ctx: gradient_shap(
        ctx.model, ctx.x, baselines=ctx.pool_x, target=ctx.labels, n_samples=32, stdev=0.1,
        seed=ctx.seed).attributions),
    ("Random", lambda ctx: torch.randn(ctx.x.shape,
                                       generator=torch.Generator().manual_seed(ctx.seed))),
)


def _fit(pixel_maps: torch.Tensor, masks: torch.Tensor) -> dict[str, np.ndarray]:
    fit = agreement(pixel_maps, masks, k=1, absolute=False)
    return {"mask_share": fit.positive_share_in_mask.numpy(),
            "pointing_game": fit.pointing_game.double().numpy()}


def run_shapes(n_cases: int, seed: int = 0, progress: Progress | None = None,
               methods: tuple[str, ...] = ()) -> tuple[list[BenchmarkRow], dict[str, object]]:
    """Every image method on ``n_cases`` scenes per background."""
    model = load_backgrounds_cnn()
    pool = generate_shapes(POOL[0], POOL[1], BACKGROUNDS)
    pool_x, pool_labels = torch.from_numpy(pool.images), torch.from_numpy(pool.labels)
    chosen = [m for m in IMAGE_METHODS if not methods or m[0] in methods]
    setting, settings_info = DEFAULTS, None
    if any(name == BEST_PATH for name, _ in chosen):
        if progress is not None:
            progress(0, 1, "IG2 path settings on the calibration scenes")
        choice = ig2_settings.calibrate(model, pool_x, pool_labels,
                                        torch.from_numpy(pool.masks), IG2_REFERENCES,
                                        IG2_STEPS, seed)
        setting, settings_info = choice.chosen, ig2_settings.choice_record(choice)
    rows: list[BenchmarkRow] = []
    accuracy: dict[str, float] = {}
    total, done = len(BACKGROUNDS) * len(chosen), 0
    for background in BACKGROUNDS:
        scenes = generate_shapes(n_cases, CASE_SEED, background)
        x, masks = torch.from_numpy(scenes.images), torch.from_numpy(scenes.masks)
        labels = torch.from_numpy(scenes.labels)
        with torch.no_grad():
            accuracy[background] = float((model(x).argmax(1) == labels).double().mean())
        context = ImageContext(model, x, labels, pool_x, pool_labels, seed, setting)
        for name, method in chosen:
            if progress is not None:
                progress(done, total, f"shapes on {background}: {name}")
            started = time.perf_counter()
            pixel_maps = method(context).detach().sum(dim=1)
            rows.append(summarise("shapes", f"shapes/{background}", None, name,
                                  _fit(pixel_maps, masks), seed=seed,
                                  extra={"seconds": round(time.perf_counter() - started, 3)}))
            done += 1
    mask_area = float(torch.from_numpy(generate_shapes(n_cases, CASE_SEED).masks).double()
                      .mean())
    return rows, {"model": MODEL_NAME, "accuracy_on_cases": accuracy,
                  "mask_area_share": round(mask_area, 4),
                  "held_out": read_metadata(MODEL_NAME).get("held_out", {}),
                  "ig2_path_settings": settings_info}


def run_cue_texts(n_cases: int, seed: int = 0, progress: Progress | None = None
                  ) -> tuple[list[BenchmarkRow], dict[str, object]]:
    """The Evaluate runner's methods on the planted-cue sentences; Random as the floor."""
    from attribution_core.evaluation.cases import bundled_cases
    from attribution_core.evaluation.runner import evaluate
    from attribution_core.evaluation.types import EvaluationSettings
    from attribution_core.models.registry import load_model

    loaded = load_model("cue_transformer", "cpu")
    cases = bundled_cases(loaded, n_cases, seed=seed).cases
    # The Evaluate page's defaults (IG 32 steps from the pad embedding, IG2 32 steps with 4
    # other-class references): a transformer on a shared 2-core CPU costs about 10 s of CPU
    # per case at the tabular suite's 64 steps and 16 references (measured), too slow here.
    # The deletion curves are not used: two points and one random order keep them cheap.
    settings = EvaluationSettings(seed=seed, random_orders=1, curve_points=2)
    result = evaluate(loaded, cases, settings, progress=progress)
    per_method: dict[str, dict[str, list[float]]] = {}
    random_fit: dict[str, list[float]] = {"mask_share": [], "pointing_game": []}
    generator = torch.Generator().manual_seed(seed)
    expected = {c.case_id: c.expected for c in cases}
    for case in result.cases:
        for outcome in case.outcomes:
            entry = per_method.setdefault(outcome.method, {"mask_share": [],
                                                           "pointing_game": []})
            entry["mask_share"].append(outcome.mask_share)
            entry["pointing_game"].append(outcome.pointing_game)
        mask = expected[case.case_id]
        if mask is not None:
            fit = _fit(torch.randn(1, mask.numel(), generator=generator, dtype=torch.float64),
                       mask.reshape(1, -1).bool())
            for key in random_fit:
                random_fit[key].append(float(fit[key][0]))
    names = {"IG": "IG(pad)", "IG2": "IG2(other class)"}
    rows = [summarise("cue_texts", "cue_texts", None, names.get(method, method),
                      {k: np.asarray(v, dtype=np.float64) for k, v in values.items()}, seed)
            for method, values in per_method.items()]
    rows.append(summarise("cue_texts", "cue_texts", None, "Random",
                          {k: np.asarray(v) for k, v in random_fit.items()}, seed))
    return rows, {"model": "cue_transformer", "n_cases": len(result.cases)}


def run_images(n_cases: int, text_cases: int, seed: int = 0, progress: Progress | None = None
               ) -> ImageResult:
    """``n_cases`` scenes per background and ``text_cases`` planted-cue sentences."""
    started = time.perf_counter()
    shape_rows, shapes_info = run_shapes(n_cases, seed, progress)
    text_rows, text_info = run_cue_texts(text_cases, seed, progress)
    return ImageResult(tuple(shape_rows + text_rows), (shapes_info, text_info),
                       time.perf_counter() - started)
