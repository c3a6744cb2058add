"""Data sets with a known answer, for validating attribution methods and metrics."""

from attribution_core.datasets.synthetic_tabular import (
    FittedRegressor,
    SyntheticTabular,
    fit_mlp,
    make_synthetic_tabular,
    r2_score,
)

__all__ = ["FittedRegressor", "SyntheticTabular", "fit_mlp", "make_synthetic_tabular",
           "r2_score"]
