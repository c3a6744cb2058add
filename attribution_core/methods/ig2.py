"""IG2: Integrated Gradients on an Iterative Gradient Path (Zhuo & Ge, TPAMI 2024; docs/IG2.md).

Each reference r gets a path g_0 = x, g_{j+1} = clip(g_j - eta * d_j / ||d_j||) descending the
representation distance D_r; its end is the counterfactual GradCF_r. Attributions integrate the
explicand gradient df/dz along every path and average over references.

Cost: all (explicand, reference) rows advance together, one path point per model call (chunked
by memory). One forward pass at a point serves both gradients: the representation is caught by
a hook on the very pass that yields f, and the retained graph is walked twice (df/dz, dD/dz).
Where a row needs only one of them (the last point; the "middle" rule's midpoints, which ride in
the same call as the next path point) one backward pass of the masked sum gives it, since rows
are independent. The path is never stored: attributions and traces accumulate as it advances.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
from torch import nn

from attribution_core.cache import ResultCache, lookup
from attribution_core.engine import (
    ForwardFn,
    GradientEngine,
    ProgressFn,
    as_output_tensor,
    device_lock,
    evaluate_in_chunks,
    frozen_parameters,
    model_device,
    module_of,
    normalise_target,
    select_target,
    split_forward_kwargs,
)
from attribution_core.methods._ig2_model import RepresentationProbe, resolve_representation
from attribution_core.results import IG2Attribution, to_device
from attribution_core.validation import check_batch_size, check_inputs, check_positive_int

Rule = Literal["trapezoid", "middle", "left"]
Norm = Literal["l2", "l1"]
RULES: tuple[str, ...] = ("trapezoid", "middle", "left")
NORMS: tuple[str, ...] = ("l2", "l1")
DEFAULT_N_STEPS = 64
AUTO_PATH_LENGTH = 1.0  # "auto" eta: path length = mean straight-line distance to the references
Representation = str | nn.Module | Callable[..., torch.Tensor] | None
Bound = float | torch.Tensor | None


def ig2(
    forward: ForwardFn,
    inputs: torch.Tensor,
    references: torch.Tensor,
    representation: Representation = None,
    target: int | list[int] | torch.Tensor | None = None,
    n_steps: int = DEFAULT_N_STEPS,
    step_size: float | Literal["auto"] = "auto",
    norm: Norm = "l2",
    rule: Rule = "trapezoid",
    batch_size: int | None = None,
    progress: ProgressFn | None = None,
    *,
    forward_kwargs: Mapping[str, Any] | None = None,
    reference_kwargs: Mapping[str, Any] | None = None,
    clip: tuple[Bound, Bound] | None = None,
    eps: float = 1e-12,
    early_stop: bool = False,
    cache: ResultCache | None = None,
    model_key: str | None = None,
) -> IG2Attribution:
    """IG2 attributions of ``forward``'s target output for explicands ``inputs`` [N, ...].

    ``references``: [B, ...] shared by every explicand, or [N, B, ...] per explicand.
    ``representation``: a module name from ``named_modules()`` (its output; ``"name:input"`` for
    its input), a module, or a callable ``representation(z, **kwargs) -> [rows, ...]``; None takes
    the input of the last registered ``nn.Linear``. ``step_size`` (eta) is in input units, in
    the chosen norm; "auto": eta = mean_r ||x - x_r|| / n_steps (a path as long as the
    straight line to the references; ReLU kinks make completeness error grow with eta).
    ``rule``: "trapezoid" (default), "middle", or "left" (the authors' code). ``clip``: the
    valid input box (lo, hi), scalars or tensors broadcastable to one input. ``early_stop``
    freezes a reference's path once its distance stops falling. ``reference_kwargs``: forward
    kwargs for the references (e.g. their attention masks); by default the explicand's are used.
    Without ``batch_size`` one extra forward pass measures memory to plan the chunk size.
    """
    _validate(inputs, references, n_steps, step_size, norm, rule, eps)
    n_explicands = inputs.shape[0]
    refs = references if references.dim() == inputs.dim() + 1 else \
        references.unsqueeze(0).expand(n_explicands, *references.shape)
    if refs.shape[0] != n_explicands or refs.shape[2:] != inputs.shape[1:]:
        raise ValueError(f"references of shape {tuple(references.shape)} do not match inputs of "
                         f"shape {tuple(inputs.shape)}: use [B, ...] or [N, B, ...].")
    probe = resolve_representation(forward, representation)
    step_sizes = auto_step_size(inputs, refs, n_steps, norm) if step_size == "auto" else \
        torch.full((n_explicands,), float(step_size), dtype=torch.float64)
    key, hit = _lookup(cache, forward, model_key, inputs, refs, probe, target, n_steps,
                       step_sizes, norm, rule, forward_kwargs, reference_kwargs, clip, eps,
                       early_stop)
    if hit is not None:
        return hit
    device = model_device(forward, inputs.device)
    runner = _PathRunner(forward, probe, inputs.detach().to(device), refs.detach().to(device),
                         target, forward_kwargs, reference_kwargs, clip, device)
    with device_lock(device), frozen_parameters(module_of(forward)), \
            probe.attached() as capture:
        runner.capture = capture
        runner.plan_rows(batch_size)
        runner.reference_pass()
        runner.walk(n_steps, step_sizes, norm, rule, eps, early_stop, progress)
    result = runner.result(n_steps, step_sizes, norm, rule, early_stop, probe.name,
                           references.dim() == inputs.dim() + 1)
    result = to_device(result, inputs.device)
    if cache is not None and key is not None:
        cache.put(key, result)
    return result


def auto_step_size(inputs: torch.Tensor, refs: torch.Tensor, n_steps: int, norm: str
                   ) -> torch.Tensor:
    """Per explicand [N] (float64, CPU): AUTO_PATH_LENGTH x the mean distance (l2 or l1) from
    that explicand to its own references / T.

    Averaging over the explicand's references only keeps its attributions independent of which
    other explicands share the batch.
    """
    gaps = (refs - inputs.unsqueeze(1)).flatten(2).detach().cpu().double()
    sizes = gaps.norm(dim=2) if norm == "l2" else gaps.abs().sum(2)
    means = sizes.mean(1)
    # Every reference equals its explicand: any eta gives a zero path.
    return torch.where(means == 0, torch.full_like(means, 1e-3),
                       AUTO_PATH_LENGTH * means / n_steps)


def _validate(inputs: torch.Tensor, references: torch.Tensor, n_steps: int,
              step_size: float | str,
              norm: str, rule: str, eps: float) -> None:
    check_inputs(inputs)
    if not isinstance(references, torch.Tensor) or references.dim() not in (
            inputs.dim(), inputs.dim() + 1):
        raise ValueError("references must be a tensor [B, ...] or [N, B, ...] matching inputs.")
    if references.shape[references.dim() - inputs.dim()] == 0:
        raise ValueError("references holds no reference (B is 0).")
    check_positive_int("n_steps", n_steps)
    if step_size != "auto" and not (isinstance(step_size, int | float) and step_size > 0):
        raise ValueError(f"step_size must be positive, got {step_size!r}.")
    if norm not in NORMS:
        raise ValueError(f"Unknown norm {norm!r}; choose one of {', '.join(NORMS)}.")
    if rule not in RULES:
        raise ValueError(f"Unknown rule {rule!r}; choose one of {', '.join(RULES)}.")
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps!r}.")


class _PathRunner:
    """State of every (explicand, reference) row along its path; rows are explicand-major."""

    def __init__(self, forward: ForwardFn, probe: RepresentationProbe, x: torch.Tensor,
                 refs: torch.Tensor, target: int | list[int] | torch.Tensor | None,
                 forward_kwargs: Mapping[str, Any] | None,
                 reference_kwargs: Mapping[str, Any] | None, clip: tuple[Bound, Bound] | None,
                 device: torch.device) -> None:
        self.forward, self.probe, self.device = forward, probe, device
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

    def walk(self, n_steps: int, step_sizes: torch.Tensor, norm: str, rule: str, eps: float,
             early_stop: bool, progress: ProgressFn | None) -> None:
        rows_total = self.n_rows
        row_eta = step_sizes.to(self.device, self.x.dtype).index_select(0, self.owner)
        g = self.x.index_select(0, self.owner).clone()
        self.acc = torch.zeros_like(g)
        prev_step = torch.zeros_like(g)
        active = torch.ones(rows_total, dtype=torch.bool, device=self.device)
        self.dist = torch.zeros(rows_total, n_steps + 1, dtype=g.dtype, device=self.device)
        self.f_path = torch.zeros_like(self.dist)
        self.cf_classes = torch.full((rows_total,), -1, dtype=torch.long, device=self.device)
        self.steps_taken = torch.full((rows_total,), n_steps, dtype=torch.long, device=self.device)
        self.evaluations = torch.zeros(rows_total, dtype=torch.long, device=self.device)
        items_per_point = 2 if rule == "middle" else 1
        total_work, done_work = (n_steps + 1) * rows_total * items_per_point, 0
        for j in range(n_steps + 1):
            view = _RowView(active.nonzero().squeeze(1), rows_total)
            if view.n == 0:
                break
            last = j == n_steps
            with_mid = rule == "middle" and j > 0
            n_path, idx = view.n, view.idx
            points, rows = view.take(g), idx
            if with_mid:  # midpoint of segment j-1 = g_j + s_{j-1} / 2, in the same call
                points = torch.cat([points, points + 0.5 * view.take(prev_step)])
                rows = torch.cat([idx, idx])
            n_items = rows.numel()
            is_path = torch.arange(n_items, device=self.device) < n_path
            want_f = (~is_path) if rule == "middle" else (
                is_path if rule == "trapezoid" or not last else torch.zeros_like(is_path))
            want_d = is_path if not last else torch.zeros_like(is_path)
            any_f, any_d = bool(want_f.any()), not last
            chunks: list[tuple[torch.Tensor, ...]] = []

            def evaluate(start: int, stop: int, points: torch.Tensor = points,
                         rows: torch.Tensor = rows, want_f: torch.Tensor = want_f,
                         want_d: torch.Tensor = want_d, any_f: bool = any_f,
                         any_d: bool = any_d) -> tuple[torch.Tensor, ...]:
                return self._evaluate(points[start:stop], rows[start:stop], want_f[start:stop],
                                      want_d[start:stop], any_f, any_d)

            def consume(start: int, stop: int, out: tuple[torch.Tensor, ...],
                        chunks: list[tuple[torch.Tensor, ...]] = chunks) -> None:
                nonlocal done_work
                chunks.append(out)
                done_work += stop - start
                if progress is not None:
                    progress(min(done_work, total_work), total_work)

            self.rows_per_call = evaluate_in_chunks(n_items, self.rows_per_call, self.device,
                                                    evaluate, consume)
            # One chunk (the common case) is used as is; several are joined in row order.
            f_items, d_items, class_items, gf_items, gd_items = (
                parts[0] if len(parts) == 1 else torch.cat(parts) for parts in zip(*chunks,
                                                                                   strict=True))
            if view.full:
                self.evaluations += 1 + int(with_mid)
            else:
                self.evaluations.index_add_(0, rows, torch.ones_like(rows))
            dist_now, f_now = d_items[:n_path], f_items[:n_path]
            if view.full:
                self.dist[:, j], self.f_path[:, j] = dist_now, f_now
                self.cf_classes.copy_(class_items[:n_path])
            else:
                self.dist[idx, j], self.f_path[idx, j] = dist_now, f_now
                self.cf_classes[idx] = class_items[:n_path]
            moving = torch.full((n_path,), not last, dtype=torch.bool, device=self.device)
            if early_stop and j > 0:
                moving &= dist_now < view.take(self.dist[:, j - 1])
            step = torch.zeros_like(points[:n_path])
            if any_d:
                step = self._descent_step(view.take(g), gd_items[:n_path], view.take(row_eta),
                                          norm, eps)
                step *= moving.view(-1, *self.feature_shape)
            if rule == "left" and any_f:
                view.add(self.acc, gf_items[:n_path] * step)
            elif rule == "trapezoid" and any_f:
                view.add(self.acc, 0.5 * gf_items[:n_path] * (view.take(prev_step) + step))
            elif rule == "middle" and with_mid:
                view.add(self.acc, gf_items[n_path:] * view.take(prev_step))
            view.put(prev_step, step)
            view.put(g, view.take(g) - step)
            stopped = idx[~moving] if not last else idx[:0]
            if stopped.numel():  # frozen: the traces keep their last value from here on
                self.steps_taken[stopped] = j
                self.dist[stopped, j:] = self.dist[stopped, j:j + 1]
                self.f_path[stopped, j:] = self.f_path[stopped, j:j + 1]
                active[stopped] = False
        if progress is not None:
            progress(total_work, total_work)
        self.g = g

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
    def result(self, n_steps: int, step_sizes: torch.Tensor, norm: str, rule: str,
               early_stop: bool,
               representation: str, per_explicand_refs: bool) -> IG2Attribution:
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
        elif isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == n_refs:
            per_row[name] = value.to(device).repeat(n_explicands, *([1] * (value.dim() - 1)))
        else:
            shared[name] = value
    return per_row, shared


def _lookup(cache: ResultCache | None, forward: ForwardFn, model_key: str | None,
            inputs: torch.Tensor, refs: torch.Tensor, probe: RepresentationProbe, target: Any,
            n_steps: int, step_sizes: torch.Tensor, norm: str, rule: str,
            forward_kwargs: Mapping[str, Any] | None, reference_kwargs: Mapping[str, Any] | None,
            clip: tuple[Bound, Bound] | None, eps: float, early_stop: bool
            ) -> tuple[str | None, IG2Attribution | None]:
    return lookup(
        cache, "ig2", forward, model_key, tensors={"inputs": inputs, "references": refs},
        params={"target": target, "n_steps": n_steps, "step_size": step_sizes, "norm": norm,
                "rule": rule, "eps": eps, "early_stop": early_stop,
                "representation": probe.name, "kwargs": dict(forward_kwargs or {}),
                "reference_kwargs": None if reference_kwargs is None else dict(reference_kwargs),
                "clip": clip},
        device=inputs.device)
