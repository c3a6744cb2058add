"""Is IG2's image gap the method or its settings? The path diagnostic picks IG2's settings on
calibration scenes (the first pool scenes, two per background, never the evaluated cases): every
setting of ``ig2_tuning.path_grid`` (eta, steps, the conv-feature layer) is run there, and the
one whose paths got closest to their references (lowest median D_r(GradCF) / D_r(x)) is the
"best path settings" run on the cases next to the defaults. The calibration table also shows
each setting's share on the mask there, for the reader; the choice never looks at it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from attribution_core.methods._ig2_trust import SHORT_PATH_REACH
from attribution_core.methods.ig2 import ig2
from attribution_core.methods.ig2_tuning import DEFAULTS, PathSetting, path_grid, resolve
from attribution_core.metrics_checks import agreement
from attribution_core.results import IG2Attribution

CALIBRATION_SCENES = 8
OTHER_LAYER = "features"  # ShapesCNN's conv stack (its output, 64 x 4 x 4)


@dataclass(frozen=True)
class SettingsChoice:
    chosen: PathSetting
    table: tuple[dict[str, Any], ...]  # one row per setting, on the calibration scenes


def run_setting(model: nn.Module, x: torch.Tensor, refs: torch.Tensor, labels: torch.Tensor,
                setting: PathSetting, n_steps: int) -> IG2Attribution:
    """IG2 of every scene [N] against its references [N, B] with ``setting`` (auto eta)."""
    steps, eta, layer = resolve(setting, x, refs, n_steps, "auto", None)
    return ig2(model, x, refs, representation=layer, target=labels, n_steps=steps,
               step_size=eta, clip=(0.0, 1.0))


def calibrate(model: nn.Module, pool_x: torch.Tensor, pool_labels: torch.Tensor,
              pool_masks: torch.Tensor, n_references: int, n_steps: int, seed: int
              ) -> SettingsChoice:
    """Every setting on the first ``CALIBRATION_SCENES`` pool scenes, each against random other
    pool scenes; the lowest median reach wins (the defaults on a tie)."""
    x = pool_x[:CALIBRATION_SCENES]
    with torch.no_grad():
        labels = model(x).argmax(1)
    refs = torch.stack([_random_others(pool_x, i, n_references, seed)
                        for i in range(x.shape[0])])
    rows = []
    for setting in path_grid(default_is_auto=True, other_layer=OTHER_LAYER):
        result = run_setting(model, x, refs, labels, setting, n_steps)
        reach = result.path_reach.double()
        fit = agreement(result.attributions.detach().sum(1), pool_masks[:x.shape[0]], k=1,
                        absolute=False)
        rows.append({"setting": setting.name,
                     "reach_median": round(float(reach.median()), 5),
                     "short_path_share": round(float((reach > SHORT_PATH_REACH).double()
                                                     .mean()), 4),
                     "mask_share_mean": round(float(fit.positive_share_in_mask.mean()), 4),
                     "pointing_game": round(float(fit.pointing_game.double().mean()), 4),
                     "scenes": int(x.shape[0])})
    grid = path_grid(default_is_auto=True, other_layer=OTHER_LAYER)
    best = min(range(len(rows)), key=lambda k: (rows[k]["reach_median"], k))
    return SettingsChoice(grid[best], tuple(rows))


def _random_others(pool_x: torch.Tensor, index: int, k: int, seed: int) -> torch.Tensor:
    order = torch.randperm(pool_x.shape[0], generator=torch.Generator().manual_seed(
        seed * 100_003 + index))
    order = order[order != index]
    return pool_x[order[:k]]


def choice_record(choice: SettingsChoice) -> dict[str, Any]:
    return {"chosen": choice.chosen.name, "defaults": DEFAULTS.name,
            "rule": "lowest median D(GradCF)/D(x) on the calibration scenes",
            "calibration": list(choice.table)}


def settings_markdown(info: Sequence[dict[str, Any]]) -> list[str]:
    """The calibration table for docs/VALIDITY.md (empty when the suite did not run it)."""
    found = next((m.get("ig2_path_settings") for m in info if m.get("ig2_path_settings")),
                 None)
    if not found:
        return []
    lines = ["", "### IG2 path settings (calibration scenes)", "",
             f"The path diagnostic chose **{found['chosen']}** ({found['rule']}; the choice "
             "never sees the masks). Reach = D(GradCF) / D(x), the squared representation "
             f"distance left at the path's end; paths above {SHORT_PATH_REACH:g} stopped "
             "short.", "",
             "| setting | reach, median | paths stopped short | share on mask | pointing game "
             "| scenes |", "| --- | --- | --- | --- | --- | --- |"]
    for row in found["calibration"]:
        lines.append(f"| {row['setting']} | {row['reach_median']:.4f} | "
                     f"{100 * row['short_path_share']:.0f} % | {row['mask_share_mean']:.3f} | "
                     f"{row['pointing_game']:.2f} | {row['scenes']} |")
    return lines

