"""Model-randomisation sanity check for the Evaluate page (Adebayo et al., 2018).

A method that explains the *model* must give different maps once the model's layers are
re-initialised; one that mostly echoes the input (edges, bright pixels) keeps its maps. The
layers are re-initialised from the output down, one more per step, on a copy of the model, and
each step's maps are compared with the trained model's by Spearman rank correlation of |map|.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from attribution_core.evaluation.runner import attribute_batch, batches
from attribution_core.evaluation.types import (
    METHOD_IG,
    METHOD_IG2,
    EvalCase,
    EvaluationInputError,
    EvaluationSettings,
)
from attribution_core.metrics import randomisation_check
from attribution_core.models.spec import LoadedModel

DEFAULT_SANITY_CASES = 8
# Below this mean rank correlation after every layer is re-initialised, a method's maps are
# taken to depend on the model (Adebayo et al. report values near 0 for methods that pass).
PASS_THRESHOLD = 0.5


@dataclass(frozen=True)
class SanityCheck:
    """Mean rank correlation with the trained model's maps after each cascade step, per method.

    ``correlations[method][0]`` compares the trained model with itself (1); entry k follows the
    re-initialisation of ``layers[:k]``.
    """

    layers: tuple[str, ...]
    methods: tuple[str, ...]
    correlations: dict[str, tuple[float, ...]]
    n_cases: int
    threshold: float
    seconds: float

    def final(self, method: str) -> float:
        return self.correlations[method][-1]

    def passed(self, method: str) -> bool:
        return self.final(method) < self.threshold


def randomisation_sanity(loaded: LoadedModel, cases: Sequence[EvalCase],
                         settings: EvaluationSettings | None = None,
                         methods: Sequence[str] = (METHOD_IG, METHOD_IG2),
                         n_cases: int = DEFAULT_SANITY_CASES, seed: int = 0,
                         progress: Callable[[str], None] | None = None) -> SanityCheck:
    """The cascading randomisation check of ``methods`` on the first ``n_cases`` cases (one
    batch of one shape). The loaded model itself is never changed, and no cache is used: a
    randomised model must not read or write the trained model's cached maps."""
    settings = settings if settings is not None else EvaluationSettings()
    if not isinstance(loaded.module, nn.Module) or loaded.forward is not loaded.module:
        raise EvaluationInputError(f"{loaded.spec.title} is explained through a wrapper, so "
                                   "its layers cannot be re-initialised here.")
    if not cases:
        raise EvaluationInputError("The randomisation check needs at least one case.")
    batch = batches(list(cases), n_cases)[0]
    started = time.perf_counter()
    correlations: dict[str, tuple[float, ...]] = {}
    layers: tuple[str, ...] = ()
    for method in methods:
        if progress is not None:
            progress(f"{method}: re-initialising the layers one by one")
        check = randomisation_check(loaded.module, _explainer(loaded, method, batch, settings),
                                    seed=seed)
        layers = check.layers
        correlations[method] = tuple(float(v) for v in check.mean_correlation.tolist())
    return SanityCheck(layers, tuple(methods), correlations, len(batch), PASS_THRESHOLD,
                       time.perf_counter() - started)


def _explainer(loaded: LoadedModel, method: str, batch: Sequence[EvalCase],
               settings: EvaluationSettings) -> Callable[[nn.Module], torch.Tensor]:
    def explain(model: nn.Module) -> torch.Tensor:
        stand_in = dataclasses.replace(loaded, module=model, forward=model,
                                       weights_hash=f"randomised-{id(model)}")
        return attribute_batch(method, stand_in, batch, settings).attributions
    return explain
