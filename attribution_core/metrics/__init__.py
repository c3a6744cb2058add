"""Faithfulness metrics: how well an attribution map tells what the model actually uses.

* deletion / insertion curves (Petsiuk et al., 2018) and their random-order reference;
* sensitivity-n (Ancona et al., 2018), infidelity and max-sensitivity (Yeh et al., 2019);
* completeness error of any result; the model-randomisation sanity check (Adebayo et al., 2018);
* agreement with expected features (precision@k, rank correlation, mask share, pointing game).

Every perturbation metric evaluates many perturbed inputs per model call: rows are built lazily
chunk by chunk (an image curve never sits in memory whole) and run through
:meth:`GradientEngine.outputs` with ``batch_size`` rows per call (None: planned from memory),
so ``R`` perturbed rows cost exactly ``ceil(R / batch_size)`` model calls.

Features are grouped into *units* by ``groups``: an integer id per feature, ``0..K-1``, every id
used. It broadcasts against one input row (e.g. ``patch_groups`` [H, W] over [C, H, W] images,
``token_groups`` [L, 1] over [L, E] embeddings) or, with the inputs' full rank, gives one map per
explicand. None makes each feature its own unit (tabular). A unit's score is the sum of its
features' attributions; units are ranked by score, descending, ties by unit id.
"""

from __future__ import annotations

from attribution_core.metrics.curves import (
    DEFAULT_CURVE_POINTS,
    PerturbationCurve,
    deletion_curve,
    insertion_curve,
    random_deletion_curve,
    random_insertion_curve,
)
from attribution_core.metrics.sensitivity import SensitivityN, infidelity, sensitivity_n
from attribution_core.metrics.units import patch_groups, token_groups
from attribution_core.metrics_checks import (
    Agreement,
    CompletenessError,
    RandomisationCheck,
    agreement,
    completeness_error,
    randomisation_check,
    rank_correlation,
    sensitivity_max,
)

__all__ = [
    "DEFAULT_CURVE_POINTS",
    "Agreement",
    "CompletenessError",
    "PerturbationCurve",
    "RandomisationCheck",
    "SensitivityN",
    "agreement",
    "completeness_error",
    "deletion_curve",
    "infidelity",
    "insertion_curve",
    "patch_groups",
    "random_deletion_curve",
    "random_insertion_curve",
    "randomisation_check",
    "rank_correlation",
    "sensitivity_max",
    "sensitivity_n",
    "token_groups",
]
