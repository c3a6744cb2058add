"""Batched gradient evaluation of a target output at many points, on the chosen device.

The engine is the one place that calls the model. Methods describe *which rows* to evaluate
(a point and the explicand that owns it) and *what to do with each chunk's gradients*; the engine
chunks rows by memory, retries a chunk with half the rows after an out-of-memory error, reports
progress, and serialises work on an accelerator with a per-device lock so that several dashboard
sessions cannot interleave on one GPU.
"""

from __future__ import annotations

import math
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from attribution_core.forward import ForwardFn, module_behind
from attribution_core.validation import check_batch_size, check_target_count, check_target_range

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
_DEVICE_LOCKS: dict[str, threading.RLock] = {}
_ROW_BYTES: weakref.WeakKeyDictionary[nn.Module, dict[tuple[Any, ...], int]] = (
    weakref.WeakKeyDictionary())
_DEVICE_LOCKS_GUARD = threading.Lock()


def pick_device(preference: str | torch.device | None = None) -> torch.device:
    """CUDA when present, else Apple's MPS, else the CPU; an explicit preference wins if usable."""
    if preference is not None:
        device = torch.device(preference)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("CUDA was requested but no CUDA device is available.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe_device(device: torch.device) -> str:
    """A human label: the GPU's name, or the CPU with its thread count."""
    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "GPU: Apple MPS"
    return f"CPU ({torch.get_num_threads()} threads)"


def resolve_device(device: torch.device | str) -> torch.device:
    """The concrete device: ``cuda`` becomes ``cuda:<current index>`` (one GPU, one name)."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        index = torch.cuda.current_device() if torch.cuda.is_available() else 0
        return torch.device("cuda", index)
    if device.type == "mps" and device.index is None:
        return torch.device("mps", 0)
    return device


@contextmanager
def device_lock(device: torch.device | str) -> Iterator[None]:
    """Serialise work on an accelerator; the CPU needs no lock (threads share it fairly).

    The lock is keyed on the resolved device, so ``cuda`` (what callers pass) and ``cuda:0``
    (where the parameters live) are the same lock.
    """
    resolved = resolve_device(device)
    if resolved.type == "cpu":
        yield
        return
    with _DEVICE_LOCKS_GUARD:
        lock = _DEVICE_LOCKS.setdefault(str(resolved), threading.RLock())
    with lock:
        yield


_FREEZE_GUARD = threading.Lock()
# Per parameter (id -> count, requires_grad found by the first one in, the parameter itself, held
# so that its id cannot be reused while counted): sessions explaining a wrapper and its backbone
# at once share the backbone's parameters, and the last one out of each restores it.
_FROZEN: dict[int, tuple[int, bool, nn.Parameter]] = {}


@contextmanager
def frozen_parameters(module: nn.Module | None) -> Iterator[None]:
    """Parameters of ``module`` do not require grad inside the block.

    Gradients are wanted with respect to the inputs only: with frozen parameters autograd
    neither saves the activations a weight gradient needs nor computes one. Reference-counted
    per parameter, because several sessions explain shared modules at once (one a wrapper, one
    the backbone inside it) and the last one out must restore what the first one found.
    """
    if module is None:
        yield
        return
    parameters = list(module.parameters())
    with _FREEZE_GUARD:
        for parameter in parameters:
            count, saved, _ = _FROZEN.get(id(parameter), (0, parameter.requires_grad, parameter))
            if count == 0:
                parameter.requires_grad_(False)
            _FROZEN[id(parameter)] = (count + 1, saved, parameter)
    try:
        yield
    finally:
        with _FREEZE_GUARD:
            for parameter in parameters:
                count, saved, _ = _FROZEN[id(parameter)]
                if count == 1:
                    del _FROZEN[id(parameter)]
                    parameter.requires_grad_(saved)
                else:
                    _FROZEN[id(parameter)] = (count - 1, saved, parameter)


def model_device(forward: ForwardFn, fallback: torch.device) -> torch.device:
    """The device of a module's first parameter, else ``fallback``."""
    module = module_behind(forward)
    if module is not None:
        for tensor in module.parameters():
            return tensor.device
    return fallback


def as_output_tensor(output: Any) -> torch.Tensor:
    """Accept a tensor, a tuple whose first item is the output, or an object with ``.logits``."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, tuple | list) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(
        f"The model returned {type(output).__name__}; expected a tensor [rows, classes] or [rows]."
    )


def select_target(output: Any, target_rows: torch.Tensor | None) -> torch.Tensor:
    """The explained scalar of every row: output[row, target[row]], or the output if scalar."""
    out = as_output_tensor(output)
    if target_rows is None:
        if out.dim() == 2 and out.shape[1] == 1:
            return out[:, 0]
        if out.dim() == 1:
            return out
        raise ValueError(
            f"The model has {out.shape[1] if out.dim() > 1 else '?'} outputs per row: "
            "pass target= to choose the output to explain."
        )
    if out.dim() != 2:
        raise ValueError(
            f"target= needs an output of shape [rows, classes], got {tuple(out.shape)}."
        )
    check_target_range(target_rows, out.shape[1])
    return out.gather(1, target_rows.view(-1, 1)).squeeze(1)


def normalise_target(target: int | torch.Tensor | list[int] | None, n: int, device: torch.device
                     ) -> torch.Tensor | None:
    """Turn an int / list / tensor target into a [n] long tensor on ``device`` (None stays None)."""
    if target is None:
        return None
    tensor = torch.as_tensor(target, dtype=torch.long, device=device).reshape(-1)
    check_target_count(tensor, n)
    return tensor.expand(n).clone() if tensor.numel() == 1 else tensor


def is_per_row(value: Any, rows: int) -> bool:
    """The one rule for forward kwargs: a tensor whose leading dimension is ``rows`` belongs to
    those rows (an attention mask per explicand); anything else is shared by every row."""
    return isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == rows


def split_forward_kwargs(forward_kwargs: Mapping[str, Any] | None, n: int
                         ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Per-explicand tensors (:func:`is_per_row`) and the shared rest."""
    per_row: dict[str, torch.Tensor] = {}
    shared: dict[str, Any] = {}
    for name, value in (forward_kwargs or {}).items():
        if is_per_row(value, n):
            per_row[name] = value
        else:
            shared[name] = value
    return per_row, shared


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


def chunks_needed(n_rows: int, batch_size: int) -> int:
    """The number of model calls a sweep of ``n_rows`` rows makes at ``batch_size`` rows."""
    return math.ceil(n_rows / batch_size)


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
