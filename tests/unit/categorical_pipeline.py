"""A scikit-learn pipeline with 3 categorical columns and missing values, its ONNX export, its
reference CSV, and the same network rebuilt in PyTorch (encoding done in torch, weights copied
from the fitted MLP), shared by the library and page tests. Synthetic data, fixed seed."""

from __future__ import annotations

import io
import warnings
from functools import lru_cache

import numpy as np
import pandas as pd
import skl2onnx
import torch
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

CATEGORICAL = ("city", "colour", "size")
NUMERIC = ("age", "income")
COLUMNS = CATEGORICAL + NUMERIC
CITIES, COLOURS, SIZES = ("Lyon", "Nice", "Paris"), ("black", "blue", "green", "red"), \
    ("L", "M", "S")


@lru_cache(maxsize=1)
def data(n: int = 400) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows (strings and numbers, about 10 % of incomes missing) and binary labels."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "city": rng.choice(CITIES, n), "colour": rng.choice(COLOURS, n),
        "size": rng.choice(SIZES, n), "age": rng.normal(40, 10, n).round(1),
        "income": rng.normal(50, 15, n).round(2)})
    score = 1.5 * (frame.city == "Paris") - 1.2 * (frame.city == "Nice") \
        + 1.0 * frame.colour.isin(["red", "green"]) - 0.8 * (frame.size == "S") \
        + 0.06 * (frame.age - 40) + 0.03 * (frame.income - 50) + rng.normal(0, 0.3, n)
    frame.loc[rng.random(n) < 0.1, "income"] = np.nan
    return frame, (score > 0.3).to_numpy().astype(int)


def make_pipeline(handle_unknown: str = "ignore") -> Pipeline:
    encode = ColumnTransformer([
        ("categories", OneHotEncoder(handle_unknown=handle_unknown), list(CATEGORICAL)),
        ("numbers", Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]),
         list(NUMERIC))])
    return Pipeline([("encode", encode),
                     ("mlp", MLPClassifier((16,), max_iter=500, random_state=0))])


@lru_cache(maxsize=2)
def exported(handle_unknown: str = "ignore") -> tuple[Pipeline, bytes]:
    """The fitted pipeline and its ONNX export (probabilities, no ZipMap)."""
    frame, labels = data()
    pipeline = make_pipeline(handle_unknown)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings of a short fit
        pipeline.fit(frame, labels)
    onnx_model = skl2onnx.to_onnx(pipeline, frame[:1],
                                  options={id(pipeline.steps[-1][1]): {"zipmap": False}})
    return pipeline, onnx_model.SerializeToString()


def reference_frame(rows: slice = slice(0, 120)) -> pd.DataFrame:
    frame, labels = data()
    table = frame.iloc[rows].copy()
    table["label"] = labels[rows]
    return table


def reference_csv(rows: slice = slice(0, 120)) -> bytes:
    """Reference rows as a CSV: string columns, empty cells where income is missing."""
    return reference_frame(rows).to_csv(index=False).encode()


def as_text_cells(csv: bytes) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(csv), dtype=str, keep_default_na=False)


class RebuiltNet(torch.nn.Module):
    """The fitted pipeline in float64 torch: one-hot (torch.nn.functional.one_hot) of category
    indices, mean imputation and standardisation of the numbers, then the MLP."""

    def __init__(self, pipeline: Pipeline) -> None:
        super().__init__()
        encode, mlp = pipeline[0], pipeline[-1]
        onehot = encode.named_transformers_["categories"]
        numbers = encode.named_transformers_["numbers"]
        self.categories = [list(map(str, c)) for c in onehot.categories_]
        self.register_buffer("fill", torch.tensor(numbers[0].statistics_))
        self.register_buffer("mean", torch.tensor(numbers[1].mean_))
        self.register_buffer("scale", torch.tensor(numbers[1].scale_))
        self.hidden = torch.nn.Linear(*mlp.coefs_[0].shape).double()
        self.out = torch.nn.Linear(*mlp.coefs_[1].shape).double()
        with torch.no_grad():
            self.hidden.weight.copy_(torch.tensor(mlp.coefs_[0].T))
            self.hidden.bias.copy_(torch.tensor(mlp.intercepts_[0]))
            self.out.weight.copy_(torch.tensor(mlp.coefs_[1].T))
            self.out.bias.copy_(torch.tensor(mlp.intercepts_[1]))

    def encode(self, frame: pd.DataFrame) -> torch.Tensor:
        """Raw rows (category names, numbers with NaN) -> the encoded rows [R, 12]."""
        parts = []
        for column, known in zip(CATEGORICAL, self.categories, strict=True):
            index = torch.tensor([known.index(str(v)) for v in frame[column]])
            parts.append(torch.nn.functional.one_hot(index, len(known)).double())
        numbers = torch.tensor(frame[list(NUMERIC)].to_numpy(dtype=np.float64))
        numbers = torch.where(torch.isnan(numbers), self.fill.expand_as(numbers), numbers)
        parts.append((numbers - self.mean) / self.scale)
        return torch.cat(parts, dim=1)

    def slot_columns(self) -> torch.Tensor:
        sizes = [len(c) for c in self.categories] + [1] * len(NUMERIC)
        return torch.repeat_interleave(torch.arange(len(COLUMNS)), torch.tensor(sizes))

    def forward(self, encoded: torch.Tensor) -> torch.Tensor:
        positive = torch.sigmoid(self.out(torch.relu(self.hidden(encoded))))
        return torch.cat([1.0 - positive, positive], dim=1)
