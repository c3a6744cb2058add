"""IG2's path walk: every (explicand, reference) row from g_0 = x to its GradCF, one path point
per (chunked) model call, attributions accumulated as the path advances (docs in ig2.py).

Reading order: :meth:`PathRunner.walk` loops over path points; :meth:`PathRunner._path_point`
does one point top to bottom: plan the rows, evaluate them, record the traces, take the descent
step, integrate the segment, freeze rows that stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from attribution_core.engine import (
    ForwardFn,
    GradientEngine,
    ProgressFn,
    as_output_tensor,
    evaluate_in_chunks,
    is_per_row,
    normalise_target,
    select_target,
    split_forward_kwargs,
)
from attribution_core.methods._ig2_model import RepresentationProbe
from attribution_core.results import IG2Attribution
from attribution_core.validation import check_batch_size

Bound = float | torch.Tensor | None


@dataclass(frozen=True)
class WalkSettings:
    """How the path is walked: T, eta per explicand [N], norm, rule, eps, early stop."""

    n_steps: int
    step_sizes: torch.Tensor
    norm: str
    rule: str
    eps: float
    early_stop: bool
    progress: ProgressFn | None = None


@dataclass(frozen=True)
class _PointPlan:
    """The rows evaluated at one path point and the gradients each needs."""

    points: torch.Tensor
    rows: torch.Tensor
    want_f: torch.Tensor
    want_d: torch.Tensor
    any_f: bool
    any_d: bool
    last: bool
    with_mid: bool


class PathRunner:
    """State of every (explicand, reference) row along its path; rows are explicand-major."""

    def __init__(self, forward: ForwardFn, probe: RepresentationProbe, x: torch.Tensor,
                 refs: torch.Tensor, target: int | list[int] | torch.Tensor | None,
                 forward_kwargs: Mapping[str, Any] | None,
                 reference_kwargs: Mapping[str, Any] | None, clip: tuple[Bound, Bound] | None,
                 device: torch.device, settings: WalkSettings) -> None:
        self.forward, self.probe, self.device, self.settings = forward, probe, device, settings
        self.n_explicands, self.n_refs = x.shape[0], refs.shape[1]
        self.n_rows = self.n_explicands * self.n_refs
        self.x, self.refs = x, refs
        self.owner = torch.arange(self.n_rows, device=device) // self.n_refs
        self.target = normalise_target(target, self.n_explicands, device)
        self.row_target = None if self.target is None else self.target[self.owner]
        self.engine = GradientEngine(forward, self.n_explicands, device, target=self.target,
                                     forward_kwargs=forward_kwargs)
        self.kwargs_by_explicand, self.shared_kwargs = split_forward_kwargs(
            forward_kwargs, self.n_explicands)
        self.kwargs_by_explicand = {k: v.to(device) for k, v in self.kwargs_by_explicand.items()}
        self.reference_kwargs = reference_kwargs
        self.lo, self.hi = (None, None) if clip is None else (
            _bound(clip[0], x), _bound(clip[1], x))
        self.capture: Callable[[], torch.Tensor] = lambda: torch.empty(0)
        self.rows_per_call = 1
        self.forward_calls = 0
        self.feature_shape = (1,) * (x.dim() - 1)
        # Path state, one row per (explicand, reference); the path itself is never stored.
        n_points = settings.n_steps + 1
        self.row_eta = settings.step_sizes.to(device, x.dtype).index_select(0, self.owner)
        self.g = x.index_select(0, self.owner).clone()
        self.acc = torch.zeros_like(self.g)
        self.prev_step = torch.zeros_like(self.g)
        self.active = torch.ones(self.n_rows, dtype=torch.bool, device=device)
        self.dist = torch.zeros(self.n_rows, n_points, dtype=x.dtype, device=device)
        self.f_path = torch.zeros_like(self.dist)
        self.cf_classes = torch.full((self.n_rows,), -1, dtype=torch.long, device=device)
        self.steps_taken = torch.full((self.n_rows,), settings.n_steps, dtype=torch.long,
                                      device=device)
        self.evaluations = torch.zeros(self.n_rows, dtype=torch.long, device=device)
        self.total_work = n_points * self.n_rows * (2 if settings.rule == "middle" else 1)
        self.done_work = 0
        self.ref_rep = torch.empty(0)
        self.f_refs = torch.empty(0)
        self.ref_classes = torch.empty(0)

    # -- model calls -------------------------------------------------------------------------
    def _call(self, points: torch.Tensor, kwargs: Mapping[str, Any]
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw output [rows, ...] and flattened representation [rows, K] of one model call."""
        self.forward_calls += 1
        output = as_output_tensor(self.forward(points, **kwargs))
        rep = self.probe.function(points, **kwargs) if self.probe.function is not None \
            else self.capture()
        return output, rep.reshape(rep.shape[0], -1)

    def _path_kwargs(self, rows: torch.Tensor) -> dict[str, Any]:
        owners = self.owner.index_select(0, rows)
        kwargs = {k: v.index_select(0, owners) for k, v in self.kwargs_by_explicand.items()}
        kwargs.update(self.shared_kwargs)
        return kwargs

    def plan_rows(self, batch_size: int | None) -> None:
        check_batch_size(batch_size)
        if batch_size is not None:
            self.rows_per_call = batch_size
            return
        plan = self.engine.plan_batch(self.x[:1], torch.zeros(1, dtype=torch.long,
                                                              device=self.device))
        self.rows_per_call = plan.rows

    def reference_pass(self) -> None:
        """Representations, f and classes of every reference: one forward pass (chunked)."""
        flat_refs = self.refs.reshape(self.n_rows, *self.refs.shape[2:])
        if self.reference_kwargs is None:
            per_row: dict[str, torch.Tensor] = {}
            shared = {}
            base = self._path_kwargs(torch.arange(self.n_rows, device=self.device))
        else:
            per_row, shared = _reference_kwargs(self.reference_kwargs, self.n_refs,
                                                self.n_rows, self.device)
            base = {}
        reps: list[torch.Tensor] = []
        outs: list[torch.Tensor] = []

        def evaluate(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
            if self.reference_kwargs is None:
                kwargs = {k: v[start:stop] if isinstance(v, torch.Tensor) and k in
                          self.kwargs_by_explicand else v for k, v in base.items()}
            else:
                kwargs = {k: v[start:stop] for k, v in per_row.items()} | shared
            with torch.no_grad():
                return self._call(flat_refs[start:stop], kwargs)

        def consume(_start: int, _stop: int, result: tuple[torch.Tensor, torch.Tensor]) -> None:
            outs.append(result[0].detach())
            reps.append(result[1].detach())

        self.rows_per_call = evaluate_in_chunks(self.n_rows, self.rows_per_call, self.device,
                                                evaluate, consume)
        outputs = torch.cat(outs)
        self.ref_rep = torch.cat(reps)
        self.f_refs = select_target(outputs, self.row_target)
        self.ref_classes = _classes(outputs)

    # -- the path ------------------------------------------------------------------------------
    def _evaluate(self, points: torch.Tensor, rows: torch.Tensor, want_f: torch.Tensor,
                  want_d: torch.Tensor, any_f: bool, any_d: bool) -> tuple[torch.Tensor, ...]:
        """f, D, class, df/dz, dD/dz at ``points`` (gradients only where wanted, else junk)."""
        needs_grad = any_f or any_d
        with torch.set_grad_enabled(needs_grad):
            z = points.detach().requires_grad_(needs_grad)
            output, rep = self._call(z, self._path_kwargs(rows))
            f = select_target(output, None if self.row_target is None
                              else self.row_target.index_select(0, rows))
            dist = (rep - self.ref_rep.index_select(0, rows)).pow(2).mean(1)
            empty = torch.zeros(0, device=z.device)
            grad_f = grad_d = empty
            if needs_grad:
                wf, wd = want_f.to(f.dtype), want_d.to(dist.dtype)
                if any_f and any_d and bool((want_f & want_d).any()):
                    grad_f = _grad((f * wf).sum(), z, retain=True)
                    grad_d = _grad((dist * wd).sum(), z, retain=False)
                else:  # disjoint rows: one backward pass of the masked sum gives both
                    grad_f = grad_d = _grad((f * wf).sum() + (dist * wd).sum(), z, retain=False)
        return f.detach(), dist.detach(), _classes(output), grad_f, grad_d

    def walk(self) -> None:
        """Advance every row from g_0 = x to GradCF, one path point per (chunked) model call."""
        for j in range(self.settings.n_steps + 1):
            view = _RowView(self.active.nonzero().squeeze(1), self.n_rows)
            if view.n == 0:
                break
            self._path_point(j, view)
        if self.settings.progress is not None:
            self.settings.progress(self.total_work, self.total_work)

    def _path_point(self, j: int, view: _RowView) -> None:
        """One path point: evaluate, record the traces, take the descent step, integrate."""
        point = self._plan_point(j, view)
        f, dist, classes, grad_f, grad_d = self._evaluate_point(point)
        self._record(j, view, point, f[:view.n], dist[:view.n], classes[:view.n])
        moving = self._still_moving(j, view, dist[:view.n])
        step = torch.zeros_like(point.points[:view.n])
        if point.any_d:
            step = self._descent_step(view.take(self.g), grad_d[:view.n], view.take(self.row_eta),
                                      self.settings.norm, self.settings.eps)
            step *= moving.view(-1, *self.feature_shape)
        self._integrate(view, point, grad_f, step)
        view.put(self.prev_step, step)
        view.put(self.g, view.take(self.g) - step)
        self._freeze(j, view.idx[~moving] if not point.last else view.idx[:0])

    def _plan_point(self, j: int, view: _RowView) -> _PointPlan:
        """Which rows are evaluated at point j, and which gradient each of them needs.

        Path rows need dD/dz (except at the last point) and, for "left" and "trapezoid",
        df/dz; the "middle" rule's midpoints of segment j-1 (g_j + s_{j-1} / 2) ride in the
        same call and need df/dz only.
        """
        rule, last = self.settings.rule, j == self.settings.n_steps
        with_mid = rule == "middle" and j > 0
        points, rows = view.take(self.g), view.idx
        if with_mid:
            points = torch.cat([points, points + 0.5 * view.take(self.prev_step)])
            rows = torch.cat([view.idx, view.idx])
        is_path = torch.arange(rows.numel(), device=self.device) < view.n
        want_f = (~is_path) if rule == "middle" else (
            is_path if rule == "trapezoid" or not last else torch.zeros_like(is_path))
        want_d = is_path if not last else torch.zeros_like(is_path)
        return _PointPlan(points, rows, want_f, want_d, bool(want_f.any()), not last, last,
                          with_mid)

    def _evaluate_point(self, point: _PointPlan) -> tuple[torch.Tensor, ...]:
        """f, D, class, df/dz and dD/dz of every planned row, chunked by memory."""
        chunks: list[tuple[torch.Tensor, ...]] = []

        def evaluate(start: int, stop: int) -> tuple[torch.Tensor, ...]:
            return self._evaluate(point.points[start:stop], point.rows[start:stop],
                                  point.want_f[start:stop], point.want_d[start:stop],
                                  point.any_f, point.any_d)

        def consume(start: int, stop: int, out: tuple[torch.Tensor, ...]) -> None:
            chunks.append(out)
            self.done_work += stop - start
            if self.settings.progress is not None:
                self.settings.progress(min(self.done_work, self.total_work), self.total_work)

        self.rows_per_call = evaluate_in_chunks(point.rows.numel(), self.rows_per_call,
                                                self.device, evaluate, consume)
        # One chunk (the common case) is used as is; several are joined in row order.
        return tuple(parts[0] if len(parts) == 1 else torch.cat(parts)
                     for parts in zip(*chunks, strict=True))

    def _record(self, j: int, view: _RowView, point: _PointPlan, f: torch.Tensor,
                dist: torch.Tensor, classes: torch.Tensor) -> None:
        if view.full:
            self.evaluations += 1 + int(point.with_mid)
            self.dist[:, j], self.f_path[:, j] = dist, f
            self.cf_classes.copy_(classes)
        else:
            self.evaluations.index_add_(0, point.rows, torch.ones_like(point.rows))
            self.dist[view.idx, j], self.f_path[view.idx, j] = dist, f
            self.cf_classes[view.idx] = classes

    def _still_moving(self, j: int, view: _RowView, dist: torch.Tensor) -> torch.Tensor:
        """Rows that take a step from point j (none at the last point; with ``early_stop``,
        only rows whose distance still falls)."""
        moving = torch.full((view.n,), j < self.settings.n_steps, dtype=torch.bool,
                            device=self.device)
        if self.settings.early_stop and j > 0:
            moving &= dist < view.take(self.dist[:, j - 1])
        return moving

    def _integrate(self, view: _RowView, point: _PointPlan, grad_f: torch.Tensor,
                   step: torch.Tensor) -> None:
        """Add segment contributions df/dz . (g_j - g_{j+1}) by the chosen rule."""
        rule, n = self.settings.rule, view.n
        if rule == "left" and point.any_f:
            view.add(self.acc, grad_f[:n] * step)
        elif rule == "trapezoid" and point.any_f:
            view.add(self.acc, 0.5 * grad_f[:n] * (view.take(self.prev_step) + step))
        elif rule == "middle" and point.with_mid:
            view.add(self.acc, grad_f[n:] * view.take(self.prev_step))

    def _freeze(self, j: int, stopped: torch.Tensor) -> None:
        """Rows that stopped early keep their last trace values from point j on."""
        if not stopped.numel():
            return
        self.steps_taken[stopped] = j
        self.dist[stopped, j:] = self.dist[stopped, j:j + 1]
        self.f_path[stopped, j:] = self.f_path[stopped, j:j + 1]
        self.active[stopped] = False

    def _descent_step(self, g: torch.Tensor, grad_d: torch.Tensor, eta: torch.Tensor, norm: str,
                      eps: float) -> torch.Tensor:
        """s_j = g_j - clip(g_j - eta * d_j / max(||d_j||, eps)); u_j = 0 where d_j = 0.

        ``eta`` [rows]: each row's step size (its explicand's)."""
        flat = grad_d.reshape(grad_d.shape[0], -1)
        size = flat.norm(dim=1) if norm == "l2" else flat.abs().sum(1)
        nxt = g - (eta / size.clamp_min(eps)).view(-1, *self.feature_shape) * grad_d
        if self.lo is not None or self.hi is not None:
            nxt = torch.clamp(nxt, min=self.lo, max=self.hi)
        return g - nxt

    # -- the result ----------------------------------------------------------------------------
    def result(self, representation: str, per_explicand_refs: bool) -> IG2Attribution:
        settings = self.settings
        n_steps, step_sizes, norm, rule = (settings.n_steps, settings.step_sizes, settings.norm,
                                           settings.rule)
        early_stop = settings.early_stop
        n, b = self.n_explicands, self.n_refs
        attributions = self.acc.reshape(n, b, *self.x.shape[1:]).mean(1)
        f_path = self.f_path.reshape(n, b, n_steps + 1)
        f_inputs = f_path[:, 0, 0].clone()
        cf_logits = f_path[:, :, -1].clone()
        f_cf = cf_logits.mean(1)
        gap = f_inputs - f_cf
        delta = attributions.reshape(n, -1).sum(1) - gap
        f_refs = self.f_refs.reshape(n, b)
        return IG2Attribution(
            attributions=attributions,
            counterfactuals=self.g.reshape(n, b, *self.x.shape[1:]),
            counterfactual_classes=self.cf_classes.reshape(n, b),
            counterfactual_logits=cf_logits, distance_trace=self.dist.reshape(n, b, -1),
            f_path=f_path, f_inputs=f_inputs, f_counterfactuals=f_cf, delta=delta,
            relative_delta=delta.abs() / gap.abs().clamp_min(1e-12), f_references=f_refs,
            f_references_mean=f_refs.mean(1), gap_vs_references=f_inputs - f_refs.mean(1),
            reference_classes=self.ref_classes.reshape(n, b), references=self.refs.clone(),
            steps_taken=self.steps_taken.reshape(n, b),
            n_evaluations=self.evaluations.reshape(n, b).sum(1),
            forward_calls=self.forward_calls, rule=rule, norm=norm,
            step_size=float(step_sizes[0]), step_sizes=step_sizes.clone(),
            n_steps=n_steps, representation=representation, early_stop=early_stop,
            target=self.target,
            params={"rule": rule, "norm": norm, "step_size": step_sizes.tolist(),
                    "n_steps": n_steps,
                    "representation": representation, "early_stop": early_stop,
                    "per_explicand_references": per_explicand_refs},
        )


class _RowView:
    """The rows evaluated at one path point: all of them (no gathers, the common case) or the
    subset still active after early stops."""

    def __init__(self, idx: torch.Tensor, n_total: int) -> None:
        self.idx, self.n, self.full = idx, idx.numel(), idx.numel() == n_total

    def take(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor if self.full else tensor.index_select(0, self.idx)

    def add(self, tensor: torch.Tensor, values: torch.Tensor) -> None:
        if self.full:
            tensor.add_(values)
        else:
            tensor.index_add_(0, self.idx, values)

    def put(self, tensor: torch.Tensor, values: torch.Tensor) -> None:
        if self.full:
            tensor.copy_(values)
        else:
            tensor.index_copy_(0, self.idx, values)


def _grad(objective: torch.Tensor, z: torch.Tensor, retain: bool) -> torch.Tensor:
    if not objective.requires_grad:  # the model ignores its input: every gradient is zero
        return torch.zeros_like(z)
    (grad,) = torch.autograd.grad(objective, z, retain_graph=retain, allow_unused=True)
    return torch.zeros_like(z) if grad is None else grad


def _classes(output: torch.Tensor) -> torch.Tensor:
    if output.dim() == 2 and output.shape[1] > 1:
        return output.detach().argmax(1)
    return torch.full((output.shape[0],), -1, dtype=torch.long, device=output.device)


def _bound(value: Bound, x: torch.Tensor) -> torch.Tensor | None:
    if value is None:
        return None
    bound = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    try:
        torch.broadcast_shapes(bound.shape, x.shape[1:])
    except RuntimeError as error:
        raise ValueError(f"clip bound of shape {tuple(bound.shape)} does not broadcast to one "
                         f"input of shape {tuple(x.shape[1:])}.") from error
    return bound


def _reference_kwargs(kwargs: Mapping[str, Any], n_refs: int, n_rows: int, device: torch.device
                      ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors with a leading dim of B (shared references) or N*B / [N, B] become per row."""
    per_row: dict[str, torch.Tensor] = {}
    shared: dict[str, Any] = {}
    n_explicands = n_rows // n_refs
    for name, value in kwargs.items():
        if isinstance(value, torch.Tensor) and value.dim() > 1 and \
                value.shape[:2] == (n_explicands, n_refs):
            per_row[name] = value.reshape(n_rows, *value.shape[2:]).to(device)
        elif is_per_row(value, n_refs):
            per_row[name] = value.to(device).repeat(n_explicands, *([1] * (value.dim() - 1)))
        else:
            shared[name] = value
    return per_row, shared
