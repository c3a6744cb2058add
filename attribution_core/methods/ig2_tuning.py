"""IG2 with the path diagnostic's best settings: a few path settings (eta, steps, the
representation layer), and for each explicand the one whose paths got closest to their
references' representations (the lowest median D_r(GradCF) / D_r(x)). The choice uses the
diagnostic only, never a ground truth, so it can be made on any input.

Reach is a ratio within one layer's distance; across layers it compares how much of each
layer's distance was left, which is what "the path reached its counterfactual" means there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from attribution_core.methods.ig2 import auto_step_size
from attribution_core.results import IG2Attribution


@dataclass(frozen=True)
class PathSetting:
    """``length``: the path as a multiple of the mean distance to the references ("auto"
    eta x length); None keeps the caller's eta. ``representation``: None keeps its layer."""

    name: str
    length: float | None = None
    steps_factor: int = 1
    representation: str | None = None


DEFAULTS = PathSetting("defaults")


def path_grid(default_is_auto: bool, other_layer: str | None = None
              ) -> tuple[PathSetting, ...]:
    """The settings tried: the defaults, a path as long as the distance (when the default eta
    is fixed), twice as long, twice the steps, and another layer when one is named."""
    grid = [DEFAULTS]
    if not default_is_auto:
        grid.append(PathSetting("path as long as the distance", length=1.0))
    grid += [PathSetting("2x longer path", length=2.0),
             PathSetting("2x steps", length=None if not default_is_auto else 1.0,
                         steps_factor=2)]
    if other_layer is not None:
        grid += [PathSetting(f"layer {other_layer}", length=1.0 if default_is_auto else None,
                             representation=other_layer),
                 PathSetting(f"layer {other_layer}, 2x longer path", length=2.0,
                             representation=other_layer)]
    return tuple(grid)


def resolve(setting: PathSetting, inputs: torch.Tensor, refs: torch.Tensor, n_steps: int,
            step_size: float | str, representation: str | None
            ) -> tuple[int, float | str | torch.Tensor, str | None]:
    """(steps, eta, layer) of ``setting`` for explicands ``inputs`` and references [N, B, ...]
    or [B, ...], given the caller's defaults."""
    steps = n_steps * setting.steps_factor
    if setting.length is None:
        eta: float | str | torch.Tensor = step_size if step_size == "auto" else \
            float(step_size) * n_steps / steps  # the same path length in more steps
    else:
        full = refs if refs.dim() == inputs.dim() + 1 else \
            refs.unsqueeze(0).expand(inputs.shape[0], *refs.shape)
        eta = auto_step_size(inputs, full, steps, "l2") * setting.length
    return steps, eta, setting.representation or representation


@dataclass(frozen=True)
class TunedIg2:
    """Per explicand: the chosen setting's result row, and every setting's median reach."""

    attributions: torch.Tensor
    delta: torch.Tensor
    relative_delta: torch.Tensor
    n_evaluations: torch.Tensor
    convergence: torch.Tensor
    path_reach: torch.Tensor  # [N, B] of the chosen setting
    chosen: tuple[str, ...]  # the setting's name per explicand
    reach_by_setting: dict[str, tuple[float, ...]]  # median reach per explicand


def best_by_reach(run: Callable[[PathSetting], IG2Attribution],
                  grid: Sequence[PathSetting]) -> TunedIg2:
    """Run every setting (``run`` explains all explicands with it) and keep, per explicand, the
    result of the setting with the lowest median reach (the first of equals: defaults first)."""
    results = [run(setting) for setting in grid]
    medians = torch.stack([r.path_reach.double().median(dim=1).values.cpu()
                           for r in results])  # [settings, N]
    pick = medians.argmin(dim=0)
    rows = range(medians.shape[1])

    def gather(name: str) -> torch.Tensor:
        return torch.stack([getattr(results[int(pick[i])], name)[i].detach().cpu()
                            for i in rows])

    evaluations = torch.stack([r.n_evaluations.cpu() for r in results]).sum(0)
    return TunedIg2(
        attributions=gather("attributions"), delta=gather("delta"),
        relative_delta=gather("relative_delta"), n_evaluations=evaluations,
        convergence=gather("convergence"), path_reach=gather("path_reach"),
        chosen=tuple(grid[int(pick[i])].name for i in rows),
        reach_by_setting={s.name: tuple(float(v) for v in medians[k].tolist())
                          for k, s in enumerate(grid)})
