"""The real data sets behind the built-in models, with fixed, deterministic train/held-out splits.

All of them ship inside scikit-learn (nothing is downloaded). The split seed never changes, so the
held-out rows the metadata's accuracy refers to are the same rows the tests evaluate.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
from sklearn import datasets as sk_datasets
from sklearn.model_selection import train_test_split

SPLIT_SEED = 0
TEST_FRACTION = 0.25
TabularName = Literal["breast_cancer", "wine", "diabetes"]

# Units of the features where the data set documents them (diabetes features are pre-scaled by
# scikit-learn: mean-centred and scaled by the standard deviation times sqrt(n_samples)).
DIABETES_NOTES = {
    "age": "years (scaled)", "sex": "(scaled)", "bmi": "body mass index (scaled)",
    "bp": "average blood pressure (scaled)", "s1": "total serum cholesterol (scaled)",
    "s2": "low-density lipoproteins (scaled)", "s3": "high-density lipoproteins (scaled)",
    "s4": "total cholesterol / HDL (scaled)", "s5": "log of serum triglycerides (scaled)",
    "s6": "blood sugar level (scaled)",
}
WINE_UNITS = {
    "alcohol": "% vol", "malic_acid": "g/l", "ash": "g/l", "alcalinity_of_ash": "g/l",
    "magnesium": "mg/l", "total_phenols": "g/l", "flavanoids": "g/l",
    "nonflavanoid_phenols": "g/l", "proanthocyanins": "g/l", "color_intensity": "(absorbance)",
    "hue": "(ratio)", "od280/od315_of_diluted_wines": "(ratio)", "proline": "mg/l",
}


@dataclass(frozen=True)
class Split:
    """Raw features (float64) and labels or targets of one deterministic split."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]
    units: tuple[str, ...]
    description: str


@lru_cache(maxsize=1)
def digits_split() -> Split:
    """scikit-learn's 8x8 handwritten digits, pixels scaled by 1/16 into [0, 1]."""
    bunch = sk_datasets.load_digits()
    images = (bunch.images / 16.0).reshape(-1, 1, 8, 8)
    x_train, x_test, y_train, y_test = train_test_split(
        images, bunch.target, test_size=TEST_FRACTION, random_state=SPLIT_SEED,
        stratify=bunch.target)
    return Split(x_train, y_train, x_test, y_test, tuple(f"pixel_{i}" for i in range(64)),
                 tuple(str(d) for d in range(10)), ("",) * 64,
                 "scikit-learn load_digits (UCI optical recognition of handwritten digits), "
                 "1797 8x8 images; pixels / 16")


@lru_cache(maxsize=3)
def tabular_split(name: TabularName) -> Split:
    """Breast cancer (binary), wine (3 classes) or diabetes (regression) from scikit-learn."""
    if name == "breast_cancer":
        bunch = sk_datasets.load_breast_cancer()
        class_names = tuple(str(c) for c in bunch.target_names)
        units = tuple("mm" if ("radius" in f or "perimeter" in f) else
                      "mm²" if "area" in f else "" for f in bunch.feature_names)
        description = ("scikit-learn load_breast_cancer (Wisconsin diagnostic), 569 rows, "
                       "30 features of cell nuclei; classes malignant/benign")
    elif name == "wine":
        bunch = sk_datasets.load_wine()
        class_names = tuple(str(c) for c in bunch.target_names)
        units = tuple(WINE_UNITS.get(f, "") for f in bunch.feature_names)
        description = ("scikit-learn load_wine (UCI wine recognition), 178 rows, 13 chemical "
                       "features; 3 cultivars")
    elif name == "diabetes":
        bunch = sk_datasets.load_diabetes()
        class_names = ("disease progression",)
        units = tuple(DIABETES_NOTES.get(f, "") for f in bunch.feature_names)
        description = ("scikit-learn load_diabetes, 442 rows, 10 baseline features; target: "
                       "a quantitative measure of disease progression one year after baseline")
    else:
        raise ValueError(f"Unknown tabular data set {name!r}.")
    x = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target)
    stratify = None if name == "diabetes" else y
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=stratify)
    return Split(x_train, y_train, x_test, y_test, tuple(str(f) for f in bunch.feature_names),
                 class_names, units, description)
