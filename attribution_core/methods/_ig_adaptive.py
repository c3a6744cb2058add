"""IG's adaptive step count: nested trapezoid refinement that stops on a per-feature criterion.

Every forward pass at a node also yields f there, so the exact integral of the directional
derivative over any interval, f(b) - f(a), is known, and so is each interval's trapezoid error
of the *sum* of attributions. That bounds the completeness error only: per-feature errors can
cancel in the sum (f = sin 6x1 - sin 6x2 has a zero completeness error on any symmetric grid).
So a run stops only when it has at least ``AUTO_MIN_NODES`` nodes and both hold:

- completeness: sum_k |e_k| <= tolerance * scale, with e_k the interval errors (absolute values,
  so errors of opposite sign cannot hide each other) and scale = max(|f(x) - f(x')|,
  COMPLETENESS_FLOOR * max(|f(x)|, |f(x')|), resolution / tolerance): when f(x) is close to
  f(x') the gap alone would ask for an error below the output's own rounding, and when both are
  near 0 with attributions that cancel, even the floor is below what float arithmetic resolves
  (resolution = RESOLUTION_FACTOR * eps * (sum_i |A_i| + |f(x)| + |f(x')|)); the per-feature
  estimate then decides alone;
- per feature: the estimated error max_i E_i over a lower bound of max_i |A_i| is at most the
  tolerance (``_ig_estimate``: an upper bound of the true per-feature error in practice). It is
  reported as the result's ``convergence``.

Intervals to bisect are marked (Doerfler, half of the total) by the sum of both indicators:
|e_k| / scale and the leaf's per-feature estimate over max_i |A_i|. Node gradients are kept
chunk by chunk on the CPU (never one concatenation on the device).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from attribution_core.engine import GradientEngine
from attribution_core.methods._ig_estimate import feature_error
from attribution_core.quadrature import trapezoid_weights
from attribution_core.results import Attribution, completeness

AUTO_INITIAL_INTERVALS = 4
AUTO_MARKING_FRACTION = 0.5
# No stop with fewer nodes: on ReLU nets with kinks crowded near the baseline, grids of 6 to 10
# nodes looked converged while off by more than the estimate, whatever the safety factor
# (oracle, docs/AUTO_IG.md); with at least 17 nodes none was.
AUTO_MIN_NODES = 17
COMPLETENESS_FLOOR = 1e-3
RESOLUTION_FACTOR = 64  # rounding of a float sum of many terms, with room for the model's own
_TINY = 1e-300


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """At least float32: bf16 quadrature weights do not even sum to 1."""
    return torch.promote_types(dtype, torch.float32)


class _NodeStore:
    """Gradient x (x - x') of every evaluated node, flattened, kept chunk by chunk on the CPU."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype
        self.chunks: list[torch.Tensor] = []
        self.starts: list[int] = []
        self.size = 0

    def append(self, rows: torch.Tensor) -> None:
        self.starts.append(self.size)
        self.chunks.append(rows.detach().to("cpu", self.dtype))
        self.size += rows.shape[0]

    def gather(self, indices: np.ndarray) -> torch.Tensor:
        """Rows at global ``indices`` (any order), in that order, as float64."""
        if indices.size == 0:
            width = self.chunks[0].shape[1] if self.chunks else 0
            return torch.zeros(0, width, dtype=torch.float64)
        starts = np.asarray(self.starts)
        chunk_of = np.searchsorted(starts, indices, side="right") - 1
        out = torch.empty(indices.size, self.chunks[0].shape[1], dtype=torch.float64)
        for chunk in np.unique(chunk_of):
            where = np.flatnonzero(chunk_of == chunk)
            local = torch.as_tensor(indices[where] - starts[chunk])
            out[torch.as_tensor(where)] = self.chunks[chunk].index_select(0, local).double()
        return out


@dataclass
class _ExplicandState:
    """One explicand's grid: node ids (global store rows) sorted by alpha, and its figures."""

    alphas: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    f: np.ndarray = field(default_factory=lambda: np.zeros(0))
    phi: np.ndarray = field(default_factory=lambda: np.zeros(0))
    interval_error: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per feature, max
    trapezoid: np.ndarray = field(default_factory=lambda: np.zeros(0))  # integral of phi, each
    completeness: np.ndarray = field(default_factory=lambda: np.zeros(0))  # trapezoid - df, each
    change: float = float("inf")
    resolution: float = 0.0  # the completeness error float arithmetic can resolve
    active: bool = True

    @property
    def completeness_error(self) -> float:
        """Sum of |interval errors|: errors of opposite sign cannot hide each other."""
        return float(np.abs(self.completeness).sum()) if self.completeness.size else float("inf")

    def merge(self, alphas: np.ndarray, ids: np.ndarray, f: np.ndarray, phi: np.ndarray) -> None:
        all_alphas = np.concatenate([self.alphas, alphas])
        order = np.argsort(all_alphas, kind="stable")
        self.alphas = all_alphas[order]
        self.ids = np.concatenate([self.ids, ids])[order]
        self.f = np.concatenate([self.f, f])[order]
        self.phi = np.concatenate([self.phi, phi])[order]


def adaptive_ig(engine: GradientEngine, x: torch.Tensor, x_base: torch.Tensor,
                tolerance: float, max_evaluations: int) -> Attribution:
    """Adaptive IG of every explicand (see the module docstring for the stopping rule)."""
    n_explicands = x.shape[0]
    acc_dtype = accumulation_dtype(x.dtype)
    diffs = x - x_base
    store = _NodeStore(acc_dtype)
    states = [_ExplicandState() for _ in range(n_explicands)]
    eps = _rounding(x)
    initial = np.linspace(0.0, 1.0, AUTO_INITIAL_INTERVALS + 1)
    pending = [(b, initial) for b in range(n_explicands)]
    history_evals: list[list[int]] = []
    history_relative: list[list[float]] = []
    history_change: list[list[float]] = []

    while pending:
        owners_np = np.concatenate([np.full(len(a), b, dtype=np.int64) for b, a in pending])
        alphas_np = np.concatenate([a for _b, a in pending])
        new_ids, new_f, new_phi = _evaluate_nodes(engine, x, x_base, diffs, store, owners_np,
                                                  alphas_np)
        pending = []
        for b, state in enumerate(states):
            mine = owners_np == b
            if not state.active or not mine.any():
                continue
            _update(state, store, alphas_np[mine], new_ids[mine], new_f[mine], new_phi[mine],
                    eps)
            evaluated = state.alphas.size
            if _converged(state, tolerance) or evaluated >= max_evaluations:
                state.active = False
                continue
            chosen = _mark_intervals(_indicators(state, tolerance),
                                     max_evaluations - evaluated)
            pending.append((b, 0.5 * (state.alphas[chosen] + state.alphas[chosen + 1])))
        history_evals.append([s.alphas.size for s in states])
        history_relative.append([_relative_delta(s) for s in states])
        history_change.append([s.change for s in states])

    return _assemble(x, x_base, diffs, states, store, acc_dtype, history_evals,
                     history_relative, history_change, tolerance, engine)


def _evaluate_nodes(engine: GradientEngine, x: torch.Tensor, x_base: torch.Tensor,
                    diffs: torch.Tensor, store: _NodeStore, owners_np: np.ndarray,
                    alphas_np: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One round: gradients at the new nodes (owner, alpha) in one sweep, stored in ``store``.

    Returns the new nodes' ids in the store, f there and the sum of their weighted gradients.
    """
    acc_dtype = store.dtype
    flat_diffs = diffs.reshape(x.shape[0], -1).to(acc_dtype)
    feature_shape = (1,) * (x.dim() - 1)
    owners_t = torch.as_tensor(owners_np, device=x.device)
    alphas_t = torch.as_tensor(alphas_np, dtype=acc_dtype, device=x.device)
    first_id = store.size
    f_parts: list[torch.Tensor] = []

    def build(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        owners = owners_t[start:stop]
        points = x_base.index_select(0, owners).to(acc_dtype) + alphas_t[start:stop].view(
            -1, *feature_shape) * diffs.index_select(0, owners).to(acc_dtype)
        return points.to(x.dtype), owners

    def consume(start: int, stop: int, outputs: torch.Tensor, grads: torch.Tensor) -> None:
        owners = owners_t[start:stop]
        weighted = grads.reshape(grads.shape[0], -1).to(acc_dtype) * \
            flat_diffs.index_select(0, owners)
        store.append(weighted)
        f_parts.append(outputs.detach().to("cpu", torch.float64))

    engine.sweep(len(owners_np), build, consume)
    new_ids = np.arange(first_id, store.size)
    new_f = torch.cat(f_parts).numpy()
    new_phi = np.concatenate([chunk.double().sum(1).numpy()
                              for chunk in store.chunks[_chunk_index(store, first_id):]])
    return new_ids, new_f, new_phi


def _chunk_index(store: _NodeStore, first_id: int) -> int:
    return int(np.searchsorted(np.asarray(store.starts), first_id, side="left"))


def _rounding(x: torch.Tensor) -> float:
    """Machine epsilon of the model's arithmetic: the input dtype, or autocast's when on."""
    eps = float(torch.finfo(x.dtype).eps) if x.dtype.is_floating_point else 0.0
    if torch.is_autocast_enabled(x.device.type):
        eps = max(eps, float(torch.finfo(torch.get_autocast_dtype(x.device.type)).eps))
    return eps


def _update(state: _ExplicandState, store: _NodeStore, alphas: np.ndarray, ids: np.ndarray,
            f: np.ndarray, phi: np.ndarray, eps: float) -> None:
    """Merge new nodes; recompute the per-feature estimate and the interval figures."""
    state.merge(alphas, ids, f, phi)
    widths = np.diff(state.alphas)
    state.trapezoid = 0.5 * widths * (state.phi[:-1] + state.phi[1:])
    state.completeness = state.trapezoid - np.diff(state.f)
    estimate = feature_error(state.alphas, state.ids, store, 1.0 / AUTO_INITIAL_INTERVALS)
    total, error = estimate.total, estimate.error
    state.resolution = RESOLUTION_FACTOR * eps * (float(total.abs().sum()) + abs(state.f[0])
                                                  + abs(state.f[-1]))
    # Relative to a lower bound of the true max_i |A_i|, never to less than float arithmetic
    # resolves (attributions that are all zero, as for f(x) = f(x') feature by feature).
    lower = float((total.abs() - error).max())
    scale = max(lower, state.resolution, _TINY)
    state.change = float(error.max()) / scale
    state.interval_error = estimate.leaf_error / scale


def _scale(state: _ExplicandState, tolerance: float) -> float:
    gap = abs(state.f[-1] - state.f[0])
    floor = COMPLETENESS_FLOOR * max(abs(state.f[-1]), abs(state.f[0]))
    return max(gap, floor, state.resolution / tolerance, _TINY)


def _converged(state: _ExplicandState, tolerance: float) -> bool:
    return (state.alphas.size >= AUTO_MIN_NODES and state.change <= tolerance
            and state.completeness_error <= tolerance * _scale(state, tolerance))


def _relative_delta(state: _ExplicandState) -> float:
    total = float(state.trapezoid.sum())
    gap = state.f[-1] - state.f[0]
    return abs(total - gap) / max(abs(gap), 1e-12)


def _indicators(state: _ExplicandState, tolerance: float) -> np.ndarray:
    return np.abs(state.completeness) / _scale(state, tolerance) + state.interval_error


def _mark_intervals(indicators: np.ndarray, budget_left: int) -> np.ndarray:
    """Doerfler marking: the fewest intervals holding half of the total indicator."""
    order = np.argsort(-indicators, kind="stable")
    cumulative = np.cumsum(indicators[order])
    total = cumulative[-1]
    count = int(np.searchsorted(cumulative, AUTO_MARKING_FRACTION * total) + 1) if total > 0 \
        else len(order)
    return np.sort(order[: max(1, min(count, budget_left))])


def _assemble(x: torch.Tensor, x_base: torch.Tensor, diffs: torch.Tensor,
              states: list[_ExplicandState], store: _NodeStore, acc_dtype: torch.dtype,
              history_evals: list[list[int]], history_relative: list[list[float]],
              history_change: list[list[float]], tolerance: float, engine: GradientEngine
              ) -> Attribution:
    """Final attributions in one pass over the stored nodes with the final weights (the
    incremental estimate steered the refinement; the result is the plain weighted sum)."""
    n_explicands = x.shape[0]
    weights = np.zeros(store.size)
    owners = np.zeros(store.size, dtype=np.int64)
    for b, state in enumerate(states):
        weights[state.ids] = trapezoid_weights(state.alphas)
        owners[state.ids] = b
    total = torch.zeros(n_explicands, store.chunks[0].shape[1], dtype=torch.float64)
    for start, chunk in zip(store.starts, store.chunks, strict=True):
        stop = start + chunk.shape[0]
        total.index_add_(0, torch.as_tensor(owners[start:stop]),
                         chunk.double() * torch.as_tensor(weights[start:stop]).view(-1, 1))
    attributions = total.to(x.device, acc_dtype).reshape(x.shape)
    f_inputs = torch.tensor([s.f[-1] for s in states], dtype=acc_dtype, device=x.device)
    f_baselines = torch.tensor([s.f[0] for s in states], dtype=acc_dtype, device=x.device)
    delta, relative = completeness(attributions, f_inputs, f_baselines)
    evaluations = torch.as_tensor(history_evals[-1], dtype=torch.long)
    return Attribution(
        attributions=attributions, f_inputs=f_inputs, f_baselines=f_baselines, delta=delta,
        relative_delta=relative, n_evaluations=evaluations, method="integrated_gradients",
        quadrature="adaptive_trapezoid", n_steps="auto", baselines=x_base, target=engine.target,
        alphas=tuple(torch.as_tensor(s.alphas, dtype=torch.float64) for s in states),
        convergence_evaluations=torch.as_tensor(history_evals, dtype=torch.long),
        convergence_relative_delta=torch.as_tensor(history_relative, dtype=torch.float64),
        convergence=torch.tensor([s.change for s in states], dtype=torch.float64),
        convergence_change=torch.as_tensor(history_change, dtype=torch.float64),
        params={"quadrature": "adaptive_trapezoid", "n_steps": "auto", "tolerance": tolerance},
    )
