"""Does IG2's convergence estimate cover its true error? Each run explains one pool input with
B other-class references and T steps (the model's eta, ``halving=True``), and compares with a
run at 4T steps (eta / 4: the same path length) over 4B other references drawn independently.

The true per-feature error is max_i |A_i - A_i(reference run)| / max_i |A_i|, the quantity
``IG2Attribution.convergence`` estimates; a run is covered when the estimate is at or above it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from attribution_core.methods.ig2 import ig2
from attribution_core.models.spec import LoadedModel
from attribution_core.results import IG2Attribution

FACTOR = 4


@dataclass(frozen=True)
class CoverageRun:
    index: int  # the explicand's index in the model's reference pool
    estimate: float  # convergence
    true_error: float
    references_part: float
    steps_part: float
    steps_error: float  # against 4T steps with the same references: the steps' part's target
    reach_median: float


@dataclass(frozen=True)
class CoverageReport:
    runs: tuple[CoverageRun, ...]
    seconds: float

    @property
    def coverage(self) -> float:
        return sum(r.estimate >= r.true_error for r in self.runs) / max(len(self.runs), 1)

    @property
    def steps_coverage(self) -> float:
        return sum(r.steps_part >= r.steps_error for r in self.runs) / max(len(self.runs), 1)


def convergence_coverage(loaded: LoadedModel, n_runs: int, n_steps: int, n_references: int,
                         seed: int = 0, with_steps_error: bool = True) -> CoverageReport:
    """``n_runs`` runs on the first pool inputs (each against references of other classes)."""
    if loaded.spec.reference_pool is None:
        raise ValueError(f"{loaded.spec.name} has no reference pool.")
    started = time.perf_counter()
    pool = loaded.spec.reference_pool()
    inputs, labels = pool.inputs.to(loaded.device), pool.labels.cpu()
    masks = pool.extras.get("attention_mask")
    eta = float(loaded.spec.ig2_step_size)
    box = loaded.spec.input_box
    clip = tuple(box) if box is not None else None
    runs = []
    for index in range(min(n_runs, inputs.shape[0])):
        x = inputs[index:index + 1]
        kwargs = {} if masks is None else {"attention_mask": masks[index:index + 1]}
        with torch.no_grad():
            target = int(loaded.forward(x, **kwargs).argmax(1))
        others = torch.nonzero(labels != target).flatten()
        others = others[others != index]
        order = others[torch.randperm(others.numel(),
                                      generator=torch.Generator().manual_seed(seed + index))]
        mine, theirs = order[:n_references], order[n_references:(1 + FACTOR) * n_references]

        def run(chosen: torch.Tensor, steps: int, step: float, halving: bool = False,
                x: torch.Tensor = x, target: int = target,
                kwargs: dict[str, torch.Tensor] = kwargs) -> IG2Attribution:
            ref_kwargs = None if masks is None else {"attention_mask": masks[chosen]}
            return ig2(loaded.forward, x, inputs[chosen],
                       representation=loaded.ig2_representation(), target=target,
                       n_steps=steps, step_size=step, forward_kwargs=kwargs or None,
                       reference_kwargs=ref_kwargs, clip=clip, halving=halving)

        result = run(mine, n_steps, eta, halving=True)
        ours = _flat(result)
        scale = float(ours.abs().max()) or 1e-300
        reference = _flat(run(theirs, FACTOR * n_steps, eta / FACTOR))
        steps_error = float("nan")
        if with_steps_error:
            finer = _flat(run(mine, FACTOR * n_steps, eta / FACTOR))
            steps_error = float((ours - finer).abs().max()) / scale
        runs.append(CoverageRun(
            index, float(result.convergence[0]), float((ours - reference).abs().max()) / scale,
            float(result.convergence_references[0]), float(result.convergence_steps[0]),
            steps_error, float(result.path_reach[0].median())))
    return CoverageReport(tuple(runs), time.perf_counter() - started)


def _flat(result: IG2Attribution) -> torch.Tensor:
    return result.attributions.reshape(-1).double()
