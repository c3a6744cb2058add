"""Is this input like the model's reference data? Simple statistics, said in words.

A model answers every input, also one nothing like its training data (a colour photo given to
the 8x8 digits model comes out as "6, p = 0.999"); the explanation of such an answer explains
an extrapolation. So before the result the pages say when an input lies outside what the
model's reference pool shows, with two honest, cheap measures, each calibrated on the pool
itself:

- **summary statistics** (images: per-channel mean and standard deviation of the pixels;
  tables: the feature values): a Mahalanobis distance to the pool's mean, with the pool's
  (shrunk) covariance (tables: in raw units; the distance does not depend on the scaling);
- **the model's own features** (the input of its representation layer, where the spec names
  one): the distance to the nearest reference input, against the nearest-neighbour distances
  of the reference inputs among themselves (leave-one-out).

An input is *far* when a measure exceeds :data:`MARGIN` times the pool's own 99th percentile of
that measure, so about 1 % of the pool itself would come close to the line and none crosses it
by the margin. Models without a reference pool get no check (nothing to compare with).
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import torch
from torch import nn

from attribution_core.models.spec import LoadedModel

MARGIN = 1.5
PERCENTILE = 0.99
MAX_POOL = 512  # reference inputs used for the profile (a random subset beyond)
SHRINKAGE = 0.1  # covariance shrinkage towards its diagonal (small pools, many features)


@dataclass(frozen=True)
class DomainProfile:
    stats_mean: torch.Tensor  # [S]
    stats_precision: torch.Tensor  # [S, S]
    stats_limit: float
    embeddings: torch.Tensor | None  # [N, E]
    embedding_limit: float | None
    stat_names: tuple[str, ...]
    stats_scale: torch.Tensor  # [S] per-statistic standard deviation


@dataclass(frozen=True)
class DomainCheck:
    """The verdict for one input: far or not, the two measures against their limits, and a
    sentence for the page (None when the input looks like the reference data)."""

    far: bool
    stats_distance: float
    stats_limit: float
    embedding_distance: float | None
    embedding_limit: float | None
    message: str | None


_PROFILES: weakref.WeakKeyDictionary[nn.Module, DomainProfile] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def summary_statistics(loaded: LoadedModel, inputs: torch.Tensor) -> tuple[torch.Tensor,
                                                                            tuple[str, ...]]:
    """``[B, S]`` statistics per input and their names."""
    data = inputs.detach().cpu().double()
    if loaded.spec.modality == "image":
        flat = data.reshape(data.shape[0], data.shape[1], -1)
        channels = data.shape[1]
        names = tuple(f"{what} of channel {c}" if channels > 1 else what
                      for what in ("mean brightness", "contrast (std)") for c in range(channels))
        return torch.cat([flat.mean(-1), flat.std(-1)], dim=1), names
    if loaded.postprocess is not None:  # raw units, so the sentence reads in them
        data = torch.as_tensor(loaded.postprocess(inputs.detach().cpu()), dtype=torch.float64)
    flat = data.reshape(data.shape[0], -1)
    # An encoded row (one-hot slots, scaled numbers) is named slot by slot ("city = Paris").
    names = tuple(loaded.extras.get("slot_names") or loaded.extras.get("feature_names") or
                  (f"feature {i}" for i in range(flat.shape[1])))
    return flat, names


def _embeddings(loaded: LoadedModel, inputs: torch.Tensor, batch: int = 128
                ) -> torch.Tensor | None:
    """The input of the representation layer (the model's own features), or None."""
    layer = loaded.representation()
    if layer is None:
        return None
    captured: list[torch.Tensor] = []

    def keep(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        captured.append(args[0].detach().reshape(args[0].shape[0], -1).cpu().double())

    handle = layer.register_forward_pre_hook(keep)
    try:
        with torch.no_grad():
            for start in range(0, inputs.shape[0], batch):
                loaded.forward(inputs[start:start + batch].to(loaded.device))
    finally:
        handle.remove()
    return torch.cat(captured) if captured else None


def _nearest(queries: torch.Tensor, pool: torch.Tensor, leave_one_out: bool) -> torch.Tensor:
    distances = torch.cdist(queries, pool)
    if leave_one_out:
        distances.fill_diagonal_(float("inf"))
    distances[distances < 1e-9] = float("inf")  # the input itself, when it is in the pool
    return distances.min(dim=1).values


def _mahalanobis(stats: torch.Tensor, mean: torch.Tensor, precision: torch.Tensor
                 ) -> torch.Tensor:
    centred = stats - mean
    return torch.sqrt(((centred @ precision) * centred).sum(-1).clamp_min(0.0))


def profile(loaded: LoadedModel) -> DomainProfile | None:
    """The pool's statistics for ``loaded`` (computed once per loaded module), or None."""
    if loaded.spec.reference_pool is None or loaded.spec.modality not in ("image", "tabular"):
        return None
    with _LOCK:
        known = _PROFILES.get(loaded.module)
    if known is not None:
        return known
    pool = loaded.spec.reference_pool().inputs
    if pool.shape[0] < 8:
        return None
    if pool.shape[0] > MAX_POOL:
        chosen = torch.randperm(pool.shape[0], generator=torch.Generator().manual_seed(0))
        pool = pool[chosen[:MAX_POOL]]
    stats, names = summary_statistics(loaded, pool)
    mean = stats.mean(0)
    covariance = torch.cov(stats.T).reshape(stats.shape[1], stats.shape[1])
    covariance = (1 - SHRINKAGE) * covariance + SHRINKAGE * torch.diag(torch.diag(covariance))
    covariance = covariance + 1e-9 * torch.eye(covariance.shape[0], dtype=covariance.dtype)
    precision = torch.linalg.pinv(covariance)
    own = _mahalanobis(stats, mean, precision)
    embeddings = _embeddings(loaded, pool)
    embedding_limit = None
    if embeddings is not None:
        embedding_limit = MARGIN * float(torch.quantile(
            _nearest(embeddings, embeddings, leave_one_out=True), PERCENTILE))
    made = DomainProfile(mean, precision, MARGIN * float(torch.quantile(own, PERCENTILE)),
                         embeddings, embedding_limit, names,
                         torch.diag(covariance).sqrt())
    with _LOCK:
        _PROFILES[loaded.module] = made
    return made


def check_input(loaded: LoadedModel, inputs: torch.Tensor) -> DomainCheck | None:
    """Whether the one input ``inputs`` ([1, ...], model space) is far from the reference pool;
    None when the model has no pool to compare with."""
    found = profile(loaded)
    if found is None:
        return None
    stats, _ = summary_statistics(loaded, inputs[:1])
    distance = float(_mahalanobis(stats, found.stats_mean, found.stats_precision)[0])
    embedding_distance = None
    if found.embeddings is not None:
        embedded = _embeddings(loaded, inputs[:1])
        if embedded is not None:
            embedding_distance = float(_nearest(embedded, found.embeddings, False)[0])
    stats_far = distance > found.stats_limit
    embedding_far = embedding_distance is not None and found.embedding_limit is not None and \
        embedding_distance > found.embedding_limit
    message = None
    if stats_far or embedding_far:
        message = _sentence(loaded, found, stats[0], distance, embedding_distance, stats_far,
                            embedding_far)
    return DomainCheck(stats_far or embedding_far, distance, found.stats_limit,
                       embedding_distance, found.embedding_limit, message)


def _sentence(loaded: LoadedModel, found: DomainProfile, stats: torch.Tensor, distance: float,
              embedding_distance: float | None, stats_far: bool, embedding_far: bool) -> str:
    what = "images" if loaded.spec.modality == "image" else "rows"
    reasons = []
    if stats_far:
        z = (stats - found.stats_mean) / found.stats_scale.clamp_min(1e-12)
        worst = int(z.abs().argmax())
        reasons.append(
            f"its {found.stat_names[worst]} is {float(stats[worst]):.3g} where the reference "
            f"{what} have {float(found.stats_mean[worst]):.3g} ± "
            f"{float(found.stats_scale[worst]):.2g} ({abs(float(z[worst])):.1f} standard "
            f"deviations; all statistics together {distance / found.stats_limit * MARGIN:.1f}x "
            "as far as 99 % of the reference data)")
    if embedding_far and embedding_distance is not None and found.embedding_limit is not None:
        ratio = embedding_distance / found.embedding_limit * MARGIN
        reasons.append(f"in the model's own features it is {ratio:.1f}x farther from the "
                       f"nearest reference {what[:-1]} than 99 % of the reference {what} are "
                       "from theirs")
    return (f"This input is unlike the data {loaded.spec.title} was made for: "
            + "; ".join(reasons) + ". The prediction, and so its explanation, may mean little "
            "here.")
