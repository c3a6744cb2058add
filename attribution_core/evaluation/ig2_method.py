"""IG2 in Evaluate: the defaults (with the map's convergence estimate), and the optional
"IG2 (best path)": per case, the path setting whose paths got closest to their references
(``methods.ig2_tuning``; the diagnostic decides, never the expected features)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from attribution_core.cache import ResultCache
from attribution_core.methods.ig2 import ig2
from attribution_core.methods.ig2_tuning import PathSetting, TunedIg2, best_by_reach, path_grid
from attribution_core.methods.ig2_tuning import resolve as resolve_setting
from attribution_core.models.spec import LoadedModel
from attribution_core.results import IG2Attribution


def run_ig2(loaded: LoadedModel, x: torch.Tensor, refs: torch.Tensor,
            target: list[int] | None, kwargs: Mapping[str, torch.Tensor],
            ref_kwargs: Mapping[str, torch.Tensor], n_steps: int, step: float | str,
            cache: ResultCache | None, setting: PathSetting | None = None) -> IG2Attribution:
    """IG2 of the stacked cases; ``setting`` changes eta, steps or layer (None: defaults).

    halving: paths at half the steps too, the steps' part of the map's convergence."""
    box = loaded.spec.input_box
    representation = loaded.ig2_representation()
    steps, eta = n_steps, step
    if setting is not None:
        steps, eta, representation = resolve_setting(setting, x, refs, n_steps, step,
                                                     representation)
    return ig2(loaded.forward, x, refs, representation=representation, target=target,
               n_steps=steps, step_size=eta, forward_kwargs=dict(kwargs) or None,
               reference_kwargs=dict(ref_kwargs) or None,
               clip=tuple(box) if box is not None else None, cache=cache,
               model_key=loaded.weights_hash, halving=True)


def run_ig2_best_path(loaded: LoadedModel, x: torch.Tensor, refs: torch.Tensor,
                      target: list[int] | None, kwargs: Mapping[str, torch.Tensor],
                      ref_kwargs: Mapping[str, torch.Tensor], n_steps: int, step: float | str,
                      cache: ResultCache | None) -> TunedIg2:
    """Every setting of ``path_grid`` over the cases; per case the one with the lowest median
    D(GradCF) / D(x)."""
    grid = best_path_grid(step)

    def run(setting: PathSetting) -> IG2Attribution:
        return run_ig2(loaded, x, refs, target, kwargs, ref_kwargs, n_steps, step, cache,
                       setting)

    return best_by_reach(run, grid)


def best_path_grid(step: float | str) -> tuple[PathSetting, ...]:
    return path_grid(default_is_auto=step == "auto")


def best_path_evaluations(n_steps: int, step: Any) -> int:
    """Path points per reference over the grid, companions included (for the cost estimate)."""
    total = 0
    for setting in best_path_grid(step):
        steps = n_steps * setting.steps_factor
        total += steps + 1 + (steps // 2 + 1 if steps >= 2 else 0)
    return total
