"""IG at a fixed quadrature rule: one sweep over the path's rows, read top to bottom.

Rows are step-major (row = step * B + explicand). A chunk of whole steps is built by
broadcasting and reduced by one matmul; other chunks (an explicit ``batch_size`` that is not a
multiple of B, or an out-of-memory back-off) fall back to gather / index_add. f(x) and f(x') are
read from the path's nodes at alpha 1 and 0 when the rule has them, else from extra rows that
ride along in the sweep's last chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attribution_core.engine import GradientEngine
from attribution_core.methods._ig_adaptive import accumulation_dtype
from attribution_core.quadrature import QuadratureRule
from attribution_core.results import Attribution, completeness


@dataclass(frozen=True)
class _StepSpan:
    """Rows [start, stop) that hold whole quadrature steps [first, last)."""

    first: int
    last: int


class FixedPath:
    """The straight path of every explicand at the nodes of ``rule``, and its running sums."""

    def __init__(self, x: torch.Tensor, x_base: torch.Tensor, rule: QuadratureRule) -> None:
        self.x, self.x_base, self.rule = x, x_base, rule
        self.n = x.shape[0]
        self.acc_dtype = accumulation_dtype(x.dtype)
        self.diffs = x.to(self.acc_dtype) - x_base.to(self.acc_dtype)
        self.base = x_base.to(self.acc_dtype)
        self.feature_shape = (1,) * (x.dim() - 1)
        self.alphas = torch.tensor(rule.alphas, dtype=self.acc_dtype, device=x.device)
        self.weights = torch.tensor(rule.step_sizes, dtype=self.acc_dtype, device=x.device)
        # Contiguous whatever the input's strides (a permuted image tensor must not break view()).
        self.accumulated = torch.zeros(x.shape, dtype=self.acc_dtype, device=x.device)
        self.endpoint_steps = [k for k, a in enumerate(rule.alphas) if a in (0.0, 1.0)]
        self.endpoint_outputs: dict[int, torch.Tensor] = {}
        self.by_alpha: dict[float, torch.Tensor] = {}

    def _whole_steps(self, start: int, stop: int) -> _StepSpan | None:
        if start % self.n or stop % self.n:
            return None
        return _StepSpan(start // self.n, stop // self.n)

    def build(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Path points of rows [start, stop) and the explicand owning each."""
        rows = torch.arange(start, stop, device=self.x.device)
        owners = rows % self.n
        steps = self._whole_steps(start, stop)
        if steps is not None:
            points = self.base.unsqueeze(0) + self.alphas[steps.first:steps.last].view(
                -1, 1, *self.feature_shape) * self.diffs.unsqueeze(0)
            return points.reshape(-1, *self.x.shape[1:]).to(self.x.dtype), owners
        points = self.base.index_select(0, owners) + self.alphas[rows // self.n].view(
            -1, *self.feature_shape) * self.diffs.index_select(0, owners)
        return points.to(self.x.dtype), owners

    def consume(self, start: int, stop: int, outputs: torch.Tensor, grads: torch.Tensor) -> None:
        """Add the weighted gradients of rows [start, stop); keep outputs at alpha 0 and 1."""
        steps = self._whole_steps(start, stop)
        if steps is not None:
            self._consume_steps(steps, outputs, grads)
        else:
            self._consume_rows(start, stop, outputs, grads)

    def _consume_steps(self, steps: _StepSpan, outputs: torch.Tensor, grads: torch.Tensor
                       ) -> None:
        flat = self.accumulated.view(self.n, -1)
        per_step = grads.reshape(steps.last - steps.first, self.n * flat.shape[1]
                                 ).to(self.acc_dtype)
        flat.add_((self.weights[steps.first:steps.last] @ per_step).view_as(flat))
        for step in self.endpoint_steps:
            if steps.first <= step < steps.last:
                offset = (step - steps.first) * self.n
                self.endpoint_outputs[step] = outputs[offset:offset + self.n]

    def _consume_rows(self, start: int, stop: int, outputs: torch.Tensor, grads: torch.Tensor
                      ) -> None:
        rows = torch.arange(start, stop, device=self.x.device)
        step_of_row, owners = rows // self.n, rows % self.n
        self.accumulated.index_add_(0, owners, grads.to(self.acc_dtype) * self.weights[
            step_of_row].view(-1, *self.feature_shape))
        for step in self.endpoint_steps:
            mask = step_of_row == step
            if bool(mask.any()):
                partial = self.endpoint_outputs.setdefault(
                    step, torch.full((self.n,), float("nan"), dtype=outputs.dtype,
                                     device=outputs.device))
                partial[owners[mask]] = outputs[mask]

    def tail(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Rows for f(x) and f(x') when the rule does not have both endpoints as nodes."""
        if len(self.endpoint_steps) >= 2:
            return None
        owners = torch.arange(self.n, device=self.x.device)
        return torch.cat([self.x, self.x_base]), torch.cat([owners, owners])

    def consume_tail(self, outputs: torch.Tensor) -> None:
        self.by_alpha[1.0], self.by_alpha[0.0] = outputs[:self.n], outputs[self.n:]

    def result(self, engine: GradientEngine) -> Attribution:
        """The attributions, f at both ends and completeness, as IG's result."""
        rule, n = self.rule, self.n
        self.by_alpha.update({float(rule.alphas[step]): values
                              for step, values in self.endpoint_outputs.items()})
        f_inputs, f_baselines = (values.to(self.acc_dtype) for values in _endpoint_values(
            engine, self.x, self.x_base, self.by_alpha))
        attributions = self.accumulated * self.diffs
        delta, relative = completeness(attributions, f_inputs, f_baselines)
        node_alphas = torch.tensor(rule.alphas, dtype=torch.float64)
        evaluations = torch.full((n,), rule.n_steps, dtype=torch.long)
        return Attribution(
            attributions=attributions, f_inputs=f_inputs, f_baselines=f_baselines, delta=delta,
            relative_delta=relative, n_evaluations=evaluations, method="integrated_gradients",
            quadrature=rule.method, n_steps=rule.n_steps, baselines=self.x_base,
            target=engine.target, alphas=tuple(node_alphas for _ in range(n)),
            convergence_evaluations=evaluations.view(1, -1),
            convergence_relative_delta=relative.detach().to("cpu", torch.float64).view(1, -1),
            params={"quadrature": rule.method, "n_steps": rule.n_steps},
        )


def fixed_ig(engine: GradientEngine, x: torch.Tensor, x_base: torch.Tensor,
             rule: QuadratureRule) -> Attribution:
    """IG of every explicand at the nodes of ``rule`` in one engine sweep."""
    path = FixedPath(x, x_base, rule)
    engine.sweep(rule.n_steps * path.n, path.build, path.consume, align=path.n,
                 tail=path.tail(), consume_tail=path.consume_tail)
    return path.result(engine)


def _endpoint_values(engine: GradientEngine, x: torch.Tensor, x_base: torch.Tensor,
                     by_alpha: dict[float, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """f(x) and f(x'), reusing path nodes at alpha 1 and 0 when the rule has them."""
    if 1.0 in by_alpha and 0.0 in by_alpha:
        return by_alpha[1.0], by_alpha[0.0]
    n = x.shape[0]
    owners = torch.arange(n, device=x.device)
    both = engine.outputs(torch.cat([x, x_base]), torch.cat([owners, owners]))
    return both[:n], both[n:]
