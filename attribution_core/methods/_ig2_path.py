"""IG2's path walk: every (explicand, reference) row from g_0 = x to its GradCF, one path point
per (chunked) model call, attributions accumulated as the path advances (docs in ig2.py).

Reading order: :meth:`PathRunner.walk` loops over path points; :meth:`PathRunner._path_point`
does one point top to bottom: plan the rows, evaluate them, record the traces, take the descent
step, integrate the segment, freeze rows that stopped.

With ``halving``, every (explicand, reference) row gets a companion row that walks the same
path length in T // 2 steps (eta x T / (T // 2)) in the same model calls; the companions stop
after their last point, and their maps give the steps' part of the convergence estimate
(``_ig2_trust``). The main rows' arithmetic does not depend on them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from attribution_core.engine import GradientEngine, ProgressFn, evaluate_in_chunks
from attribution_core.forward import ForwardFn
from attribution_core.methods._ig2_model import RepresentationProbe
from attribution_core.methods._ig2_rows import (
    Bound,
    RowView,
    classes_of,
    clip_bound,
    gradient_of,
    reference_kwargs_per_row,
)
from attribution_core.methods._ig2_trust import CoarseGrid, estimate
from attribution_core.model_outputs import (
    as_output_tensor,
    normalise_target,
    select_target,
    split_forward_kwargs,
)
from attribution_core.results import IG2Attribution
from attribution_core.validation import check_batch_size


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
    # The preview's bf16 autocast (None: the exact float path, untouched).
    autocast: torch.dtype | None = None
    halving: bool = False  # companion rows at T // 2 steps (module docstring)

    @property
    def half_steps(self) -> int:
        """The companions' step count (0: no companions; T < 2 cannot be halved)."""
        return self.n_steps // 2 if self.halving and self.n_steps >= 2 else 0


@dataclass(frozen=True)
class _PointPlan:
    """The rows evaluated at one path point and the gradients each needs."""

    points: torch.Tensor
    rows: torch.Tensor
    want_f: torch.Tensor
    want_d: torch.Tensor
    any_f: bool
    any_d: bool
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
        # Main rows (explicand-major), then as many companion rows when halving.
        self.n_main = self.n_explicands * self.n_refs
        half = settings.half_steps
        self.n_rows = self.n_main * (2 if half else 1)
        self.x, self.refs = x, refs
        self.ref_index = torch.arange(self.n_rows, device=device) % self.n_main
        self.owner = self.ref_index // self.n_refs
        self.row_steps = torch.full((self.n_rows,), settings.n_steps, dtype=torch.long,
                                    device=device)
        self.row_steps[self.n_main:] = half
        self.target = normalise_target(target, self.n_explicands, device)
        self.row_target = None if self.target is None else self.target[self.owner]
        self.engine = GradientEngine(forward, self.n_explicands, device, target=self.target,
                                     forward_kwargs=forward_kwargs)
        self.kwargs_by_explicand, self.shared_kwargs = split_forward_kwargs(
            forward_kwargs, self.n_explicands)
        self.kwargs_by_explicand = {k: v.to(device) for k, v in self.kwargs_by_explicand.items()}
        self.reference_kwargs = reference_kwargs
        self.lo, self.hi = (None, None) if clip is None else (
            clip_bound(clip[0], x), clip_bound(clip[1], x))
        self.capture: Callable[[], torch.Tensor] = lambda: torch.empty(0)
        self.rows_per_call = 1
        self.forward_calls = 0
        self.feature_shape = (1,) * (x.dim() - 1)
        # Path state, one row per (explicand, reference); the path itself is never stored.
        n_points = settings.n_steps + 1
        etas = settings.step_sizes.double()
        if half:  # the same path length in half the steps
            etas = torch.cat([etas, etas * settings.n_steps / half])
        self.row_eta = etas.to(device, x.dtype).index_select(
            0, self.owner + self.n_explicands * (self.row_steps != settings.n_steps))
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
        # Without companions, the step-halving estimate integrates the same path on every
        # other point (no extra row).
        self.coarse = None if half else CoarseGrid(self.g, settings.rule)
        self.total_work = (n_points + (half + 1 if half else 0)) * self.n_main * (
            2 if settings.rule == "middle" else 1)
        self.done_work = 0
        self.ref_rep = torch.empty(0)
        self.f_refs = torch.empty(0)
        self.ref_classes = torch.empty(0)

    # -- model calls -------------------------------------------------------------------------
    def _call(self, points: torch.Tensor, kwargs: Mapping[str, Any]
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw output [rows, ...] and flattened representation [rows, K] of one model call."""
        self.forward_calls += 1
        if self.settings.autocast is not None:
            with torch.autocast(device_type=self.device.type, dtype=self.settings.autocast):
                output, rep = self._forward_and_capture(points, kwargs)
            # Distances and gradients in the inputs' precision; the model ran in bf16.
            return output.to(points.dtype), rep.to(points.dtype)
        return self._forward_and_capture(points, kwargs)

    def _forward_and_capture(self, points: torch.Tensor, kwargs: Mapping[str, Any]
                             ) -> tuple[torch.Tensor, torch.Tensor]:
        output = as_output_tensor(self.forward(points, **kwargs))
        rep = self.probe.function(points, **kwargs) if self.probe.function is not None \
            else self.capture()
        # A pipeline's hidden layer may run in another precision (ONNX casts); distances are
        # kept in the inputs' precision, like the path itself.
        return output, rep.reshape(rep.shape[0], -1).to(points.dtype)

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
        flat_refs = self.refs.reshape(self.n_main, *self.refs.shape[2:])
        if self.reference_kwargs is None:
            per_row: dict[str, torch.Tensor] = {}
            shared = {}
            base = self._path_kwargs(torch.arange(self.n_main, device=self.device))
        else:
            per_row, shared = reference_kwargs_per_row(self.reference_kwargs, self.n_refs,
                                                       self.n_main, self.device)
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

        self.rows_per_call = evaluate_in_chunks(self.n_main, self.rows_per_call, self.device,
                                                evaluate, consume)
        outputs = torch.cat(outs)
        self.ref_rep = torch.cat(reps)
        self.f_refs = select_target(outputs, None if self.row_target is None
                                    else self.row_target[:self.n_main])
        self.ref_classes = classes_of(outputs)

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
            ref_rep = self.ref_rep if rows.numel() == self.n_main and self.n_rows == \
                self.n_main else self.ref_rep.index_select(0, self.ref_index.index_select(0, rows))
            dist = (rep - ref_rep).pow(2).mean(1)
            empty = torch.zeros(0, device=z.device)
            grad_f = grad_d = empty
            if needs_grad:
                wf, wd = want_f.to(f.dtype), want_d.to(dist.dtype)
                if any_f and any_d and bool((want_f & want_d).any()):
                    grad_f = gradient_of((f * wf).sum(), z, retain=True)
                    grad_d = gradient_of((dist * wd).sum(), z, retain=False)
                else:  # disjoint rows: one backward pass of the masked sum gives both
                    grad_f = grad_d = gradient_of((f * wf).sum() + (dist * wd).sum(), z,
                                                  retain=False)
        return f.detach(), dist.detach(), classes_of(output), grad_f, grad_d

    def walk(self) -> None:
        """Advance every row from g_0 = x to GradCF, one path point per (chunked) model call."""
        for j in range(self.settings.n_steps + 1):
            view = RowView(self.active.nonzero().squeeze(1), self.n_rows)
            if view.n == 0:
                break
            self._path_point(j, view)
        if self.settings.progress is not None:
            self.settings.progress(self.total_work, self.total_work)

    def _path_point(self, j: int, view: RowView) -> None:
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
        self._integrate_coarse(j, view, point, grad_f, step, ~moving)
        view.put(self.prev_step, step)
        view.put(self.g, view.take(self.g) - step)
        if j < self.settings.n_steps:  # after the last point nothing moves anyway
            self._freeze(j, view.idx[~moving])

    def _plan_point(self, j: int, view: RowView) -> _PointPlan:
        """Which rows are evaluated at point j, and which gradient each of them needs.

        Path rows need dD/dz (except at their last point) and, for "left" and "trapezoid",
        df/dz (the left rule none at the last point); the "middle" rule's midpoints of segment
        j-1 (g_j + s_{j-1} / 2) ride in the same call and need df/dz only.
        """
        rule = self.settings.rule
        with_mid = rule == "middle" and j > 0
        points, rows = view.take(self.g), view.idx
        if with_mid:
            points = torch.cat([points, points + 0.5 * view.take(self.prev_step)])
            rows = torch.cat([view.idx, view.idx])
        is_path = torch.arange(rows.numel(), device=self.device) < view.n
        if self.n_rows == self.n_main:  # one step count: "last" is the same for every row
            last = torch.full_like(is_path, j == self.settings.n_steps)
        else:
            last = self.row_steps.index_select(0, rows) == j
        want_f = (~is_path) if rule == "middle" else (
            is_path if rule == "trapezoid" else is_path & ~last)
        want_d = is_path & ~last
        any_d = j < self.settings.n_steps if self.n_rows == self.n_main else \
            bool(want_d.any())
        return _PointPlan(points, rows, want_f, want_d, bool(want_f.any()), any_d, with_mid)

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

    def _record(self, j: int, view: RowView, point: _PointPlan, f: torch.Tensor,
                dist: torch.Tensor, classes: torch.Tensor) -> None:
        if view.full:
            self.evaluations += 1 + int(point.with_mid)
            self.dist[:, j], self.f_path[:, j] = dist, f
            self.cf_classes.copy_(classes)
        else:
            self.evaluations.index_add_(0, point.rows, torch.ones_like(point.rows))
            self.dist[view.idx, j], self.f_path[view.idx, j] = dist, f
            self.cf_classes[view.idx] = classes

    def _still_moving(self, j: int, view: RowView, dist: torch.Tensor) -> torch.Tensor:
        """Rows that take a step from point j (none at their last point; with ``early_stop``,
        only rows whose distance still falls)."""
        if self.n_rows == self.n_main:
            moving = torch.full((view.n,), j < self.settings.n_steps, dtype=torch.bool,
                                device=self.device)
        else:
            moving = view.take(self.row_steps) > j
        if self.settings.early_stop and j > 0:
            moving &= dist < view.take(self.dist[:, j - 1])
        return moving

    def _integrate(self, view: RowView, point: _PointPlan, grad_f: torch.Tensor,
                   step: torch.Tensor) -> None:
        """Add segment contributions df/dz . (g_j - g_{j+1}) by the chosen rule."""
        rule, n = self.settings.rule, view.n
        if rule == "left" and point.any_f:
            view.add(self.acc, grad_f[:n] * step)
        elif rule == "trapezoid" and point.any_f:
            view.add(self.acc, 0.5 * grad_f[:n] * (view.take(self.prev_step) + step))
        elif rule == "middle" and point.with_mid:
            view.add(self.acc, grad_f[n:] * view.take(self.prev_step))

    def _integrate_coarse(self, j: int, view: RowView, point: _PointPlan,
                          grad_f: torch.Tensor, step: torch.Tensor, ended: torch.Tensor
                          ) -> None:
        """The same path on every other point (the step-halving estimate, ``_ig2_trust``)."""
        if self.coarse is None:
            return
        n = view.n
        if self.settings.rule == "middle":
            if point.with_mid:
                self.coarse.update_middle(view, j - 1, grad_f[n:], view.take(self.prev_step),
                                          ended)
            return
        self.coarse.update(view, j, grad_f[:n] if point.any_f else None, step, ended)

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
        n, b, main = self.n_explicands, self.n_refs, slice(0, self.n_main)
        acc = self.acc[main]
        attributions = acc.reshape(n, b, *self.x.shape[1:]).mean(1)
        f_path = self.f_path[main].reshape(n, b, n_steps + 1)
        f_inputs = f_path[:, 0, 0].clone()
        cf_logits = f_path[:, :, -1].clone()
        f_cf = cf_logits.mean(1)
        gap = f_inputs - f_cf
        delta = attributions.reshape(n, -1).sum(1) - gap
        f_refs = self.f_refs.reshape(n, b)
        # Companions (a real path at half the steps) or the same path on every other point.
        compared = self.acc[self.n_main:] if self.coarse is None else self.coarse.acc
        trust = estimate(acc, compared, n)
        evaluations = self.evaluations.reshape(-1, n, b).sum(0).sum(1)
        return IG2Attribution(
            attributions=attributions,
            counterfactuals=self.g[main].reshape(n, b, *self.x.shape[1:]),
            counterfactual_classes=self.cf_classes[main].reshape(n, b),
            counterfactual_logits=cf_logits, distance_trace=self.dist[main].reshape(n, b, -1),
            f_path=f_path, f_inputs=f_inputs, f_counterfactuals=f_cf, delta=delta,
            relative_delta=delta.abs() / gap.abs().clamp_min(1e-12), f_references=f_refs,
            f_references_mean=f_refs.mean(1), gap_vs_references=f_inputs - f_refs.mean(1),
            reference_classes=self.ref_classes.reshape(n, b), references=self.refs.clone(),
            steps_taken=self.steps_taken[main].reshape(n, b), n_evaluations=evaluations,
            forward_calls=self.forward_calls, rule=rule, norm=norm,
            step_size=float(step_sizes[0]), step_sizes=step_sizes.clone(),
            n_steps=n_steps, representation=representation, early_stop=early_stop,
            target=self.target, convergence=trust.convergence,
            convergence_references=trust.references, convergence_steps=trust.steps,
            reference_standard_error=trust.standard_error, step_change=trust.step_change,
            convergence_steps_from="half-steps path" if self.coarse is None
            else "same path, every other point",
            params={"rule": rule, "norm": norm, "step_size": step_sizes.tolist(),
                    "n_steps": n_steps,
                    "representation": representation, "early_stop": early_stop,
                    "per_explicand_references": per_explicand_refs,
                    "halving": settings.half_steps > 0},
        )
