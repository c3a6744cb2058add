"""The sweep: batched gradient evaluation of a target output at many points, with its memory plan.

The engine is the one place that calls the model. Methods describe *which rows* to evaluate
(a point and the explicand that owns it) and *what to do with each chunk's gradients*; the engine
plans the chunk size from measured activation memory, retries a chunk with half the rows after
an out-of-memory error, reports progress, and holds the per-device lock and frozen parameters
(:mod:`attribution_core.devices`) while it runs. What a model returned and which output is
explained is :mod:`attribution_core.model_outputs`.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from attribution_core.devices import device_lock, frozen_parameters
from attribution_core.forward import ForwardFn, module_behind
from attribution_core.model_outputs import as_output_tensor, select_target, split_forward_kwargs
from attribution_core.validation import check_batch_size

# The dashboard takes the device lock from here (its import path since the engine was one file).
__all__ = ["BatchPlan", "GradientEngine", "ProgressFn", "device_lock", "evaluate_in_chunks"]

ProgressFn = Callable[[int, int], None]
ChunkBuilder = Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]
ChunkConsumer = Callable[[int, int, torch.Tensor, torch.Tensor], None]

CPU_MAX_ROWS = 512
ACCELERATOR_MAX_ROWS = 4096
CPU_MEMORY_BUDGET_BYTES = 2 * 1024**3
# Output-only rows ride along in a gradient call (paying a backward) only for small rows, where a
# separate call's fixed overhead costs more; big models pay less for one no-grad call.
FOLD_MAX_ROW_ELEMENTS = 4096
# The memory planner probes with 1 and 2 rows (see GradientEngine._measure_row_bytes).
MEMORY_PROBE_CALLS = 2
_ROW_BYTES: weakref.WeakKeyDictionary[nn.Module, dict[tuple[Any, ...], int]] = (
    weakref.WeakKeyDictionary())


def _is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def _available_host_memory() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return CPU_MEMORY_BUDGET_BYTES * 4


@dataclass(frozen=True)
class BatchPlan:
    rows: int
    bytes_per_row: int
    budget_bytes: int


class GradientEngine:
    """Evaluates ``d f_target / d point`` for rows of points, chunk by chunk.

    ``forward_kwargs`` tensors with a leading explicand dimension are gathered per row by owner,
    so an attention mask follows its explicand through every interpolation step.
    """

    def __init__(
        self,
        forward: ForwardFn,
        n_explicands: int,
        device: torch.device,
        target: torch.Tensor | None = None,
        forward_kwargs: Mapping[str, Any] | None = None,
        batch_size: int | None = None,
        progress: ProgressFn | None = None,
    ) -> None:
        check_batch_size(batch_size)
        self.forward = forward
        self.device = device
        self.target = target
        self.per_row_kwargs, self.shared_kwargs = split_forward_kwargs(forward_kwargs, n_explicands)
        self.per_row_kwargs = {k: v.to(device) for k, v in self.per_row_kwargs.items()}
        self.batch_size = batch_size
        self.progress = progress
        self.forward_calls = 0

    # -- model calls -------------------------------------------------------------------------
    def _kwargs_for(self, owners: torch.Tensor) -> dict[str, Any]:
        kwargs = {
            name: value.index_select(0, owners) for name, value in self.per_row_kwargs.items()
        }
        kwargs.update(self.shared_kwargs)
        return kwargs

    def _targets_for(self, owners: torch.Tensor) -> torch.Tensor | None:
        return None if self.target is None else self.target.index_select(0, owners)

    def outputs(self, points: torch.Tensor, owners: torch.Tensor) -> torch.Tensor:
        """Target outputs without gradients (endpoints, metrics)."""
        with torch.no_grad(), device_lock(self.device):
            self.forward_calls += 1
            raw = self.forward(points, **self._kwargs_for(owners))
            return select_target(raw, self._targets_for(owners)).detach()

    def gradients(self, points: torch.Tensor, owners: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """Target outputs [rows] and their gradients w.r.t. ``points`` [rows, ...]."""
        with torch.enable_grad():
            points = points.detach().requires_grad_(True)
            self.forward_calls += 1
            selected = select_target(
                self.forward(points, **self._kwargs_for(owners)), self._targets_for(owners)
            )
            (grads,) = torch.autograd.grad(
                selected, points, grad_outputs=torch.ones_like(selected)
            )
        return selected.detach(), grads

    def gradients_with_extra(self, points: torch.Tensor, owners: torch.Tensor,
                             extra_points: torch.Tensor, extra_owners: torch.Tensor
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Like :meth:`gradients`, plus outputs of ``extra_points`` from the same model call.

        For small models a separate call costs more than a few extra rows in a call that is
        made anyway; the extra rows get a zero output gradient, so the result is unchanged.
        """
        n = points.shape[0]
        all_owners = torch.cat([owners, extra_owners])
        with torch.enable_grad():
            leaf = torch.cat([points.detach(), extra_points.detach()]).requires_grad_(True)
            self.forward_calls += 1
            selected = select_target(
                self.forward(leaf, **self._kwargs_for(all_owners)), self._targets_for(all_owners)
            )
            upstream = torch.zeros_like(selected)
            upstream[:n] = 1
            (grads,) = torch.autograd.grad(selected, leaf, grad_outputs=upstream)
        selected = selected.detach()
        return selected[:n], grads[:n], selected[n:]

    # -- batch size ----------------------------------------------------------------------------
    def plan_batch(self, sample_point: torch.Tensor, sample_owner: torch.Tensor) -> BatchPlan:
        """Measure activation memory of one row (bytes saved for backward) and fit a budget.

        The measurement is memoised per module and row signature: for small models the probe
        forward would otherwise cost as much as the attribution itself.
        """
        module = self.forward if isinstance(self.forward, nn.Module) else None
        signature = (tuple(sample_point.shape[1:]), sample_point.dtype, str(self.device),
                     tuple((k, tuple(v.shape[1:])) for k, v in self.per_row_kwargs.items()))
        known = _ROW_BYTES.get(module, {}).get(signature) if module is not None else None
        per_row = known if known is not None else self._measure_row_bytes(sample_point,
                                                                          sample_owner)
        if module is not None:
            _ROW_BYTES.setdefault(module, {})[signature] = per_row
        if self.device.type == "cuda":
            free, _total = torch.cuda.mem_get_info(self.device)
            budget, cap = int(free * 0.6), ACCELERATOR_MAX_ROWS
        elif self.device.type == "mps":
            budget, cap = CPU_MEMORY_BUDGET_BYTES, ACCELERATOR_MAX_ROWS
        else:
            budget = min(CPU_MEMORY_BUDGET_BYTES, _available_host_memory() // 4)
            cap = CPU_MAX_ROWS
        return BatchPlan(max(1, min(cap, budget // per_row)), per_row, budget)

    def _measure_row_bytes(self, sample_point: torch.Tensor, sample_owner: torch.Tensor) -> int:
        """Activation bytes of one row: what a 2-row probe saves for backward minus a 1-row one.

        The difference cancels whatever does not grow with rows (weights saved by linear layers,
        buffers, constants), which a single probe would count as if every row carried it.
        """
        one = self._saved_bytes(sample_point, sample_owner)
        two = self._saved_bytes(torch.cat([sample_point, sample_point]),
                                torch.cat([sample_owner, sample_owner]))
        saved, out_bytes = max(two[0] - one[0], 0), max(two[1] - one[1], 0)
        point_bytes = sample_point[:1].numel() * sample_point.element_size()
        # Forward outputs, gradients and the point itself come on top of saved activations.
        return max(1, 2 * saved + 4 * point_bytes + out_bytes)

    def _saved_bytes(self, points: torch.Tensor, owners: torch.Tensor) -> tuple[int, int]:
        saved = 0

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            nonlocal saved
            saved += tensor.numel() * tensor.element_size()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), \
                torch.enable_grad(), device_lock(self.device), \
                frozen_parameters(module_behind(self.forward)):
            point = points.detach().requires_grad_(True)
            out = as_output_tensor(self.forward(point, **self._kwargs_for(owners)))
        return saved, out.numel() * out.element_size()

    # -- the sweep -------------------------------------------------------------------------------
    def sweep(self, n_rows: int, build_chunk: ChunkBuilder, consume: ChunkConsumer,
              align: int = 1, tail: tuple[torch.Tensor, torch.Tensor] | None = None,
              consume_tail: Callable[[torch.Tensor], None] | None = None) -> int:
        """Evaluate rows [0, n_rows) in chunks; ``consume(start, stop, outputs, grads)`` each.

        With an automatic batch size, chunks hold a multiple of ``align`` rows where possible
        (whole quadrature steps of all explicands, which callers reduce with one matmul); an
        explicit ``batch_size`` is honoured exactly. ``tail`` rows (points, owners) need outputs
        only: they ride along in the last chunk when they fit its slack, else get one no-grad
        call; ``consume_tail`` receives their outputs. Returns the rows per chunk used last.
        """
        if tail is not None and consume_tail is None:
            raise ValueError("tail rows need consume_tail.")
        if n_rows <= 0:
            if tail is not None and consume_tail is not None:
                consume_tail(self.outputs(*tail))
            return self.batch_size or 1
        rows = self.batch_size
        if rows is None:
            point, owner = build_chunk(0, 1)
            rows = _aligned(self.plan_batch(point, owner).rows, align)
        rows = min(rows, n_rows)
        batch_rows = rows
        pending_tail = [tail]  # emptied once the tail's outputs are consumed

        def evaluate(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor,
                                                     torch.Tensor | None]:
            points, owners = build_chunk(start, stop)
            extra = pending_tail[0]
            if extra is not None and stop == n_rows and \
                    _fits_slack(stop - start, extra[0].shape[0], batch_rows) and \
                    points[0].numel() <= FOLD_MAX_ROW_ELEMENTS:
                return self.gradients_with_extra(points, owners, *extra)
            outputs, grads = self.gradients(points, owners)
            return outputs, grads, None

        def take(start: int, stop: int,
                 result: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]) -> None:
            outputs, grads, tail_outputs = result
            if tail_outputs is not None and consume_tail is not None:
                consume_tail(tail_outputs)
                pending_tail[0] = None
            consume(start, stop, outputs, grads)
            if self.progress is not None:
                self.progress(stop, n_rows)

        with device_lock(self.device), frozen_parameters(module_behind(self.forward)):
            rows = evaluate_in_chunks(n_rows, rows, self.device, evaluate, take,
                                      align=1 if self.batch_size is not None else align)
            if pending_tail[0] is not None and consume_tail is not None:
                consume_tail(self.outputs(*pending_tail[0]))
        return rows


def _fits_slack(chunk_rows: int, tail_rows: int, batch_rows: int) -> bool:
    """Tail rows may ride along if the chunk stays within 10% (at least 2 rows) of a batch."""
    return chunk_rows + tail_rows <= batch_rows + max(2, batch_rows // 10)


def _aligned(rows: int, align: int) -> int:
    return rows - rows % align if rows >= align > 1 else rows


# -- chunked evaluation with out-of-memory back-off: the one loop every method uses -------------
ChunkResult = TypeVar("ChunkResult")


def evaluate_in_chunks(n_rows: int, rows: int, device: torch.device,
                       evaluate: Callable[[int, int], ChunkResult],
                       consume: Callable[[int, int, ChunkResult], None], align: int = 1) -> int:
    """Run ``evaluate(start, stop)`` over rows [0, n_rows) in chunks of at most ``rows`` rows.

    After an out-of-memory error the chunk is retried with half the rows (kept a multiple of
    ``align`` where possible); any other error propagates. ``consume`` runs outside the retry,
    so it never sees a chunk twice. The caller holds :func:`device_lock`. Returns the chunk
    size used last, so a caller looping over path steps keeps a backed-off size.

    Parameters
    ----------
    n_rows : int
        Rows to evaluate in all.
    rows : int
        Rows per chunk to start with, >= 1.
    device : torch.device
        Where ``evaluate`` runs (a CUDA cache is emptied before a retry).
    evaluate : callable
        ``evaluate(start, stop)``: the result of rows [start, stop).
    consume : callable
        ``consume(start, stop, result)``: takes each chunk's result once, in row order.
    align : int, optional
        A halved chunk is rounded down to a multiple of this where it is at least this large
        (default 1).

    Returns
    -------
    int
        The chunk size in use at the end (smaller than ``rows`` after a back-off).
    """
    if rows < 1:
        raise ValueError(f"rows must be positive, got {rows}.")
    done = 0
    while done < n_rows:
        stop = min(n_rows, done + rows)
        try:
            result = evaluate(done, stop)
        except Exception as error:  # only memory errors are retried
            if not _is_out_of_memory(error) or stop - done == 1:
                raise
            del error
            if device.type == "cuda":
                torch.cuda.empty_cache()
            rows = _aligned(max(1, (stop - done) // 2), align)
            continue
        consume(done, stop, result)
        done = stop
    return rows
