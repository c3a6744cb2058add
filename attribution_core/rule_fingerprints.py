"""The numerical fingerprint of every cached rule, recorded per rule version.

Each rule runs on a fixed float64 problem whose weights are closed-form (no RNG, the same on
every machine); a few numbers summarise what it returned (weighted sums of the attributions,
evaluation counts, the reported convergence). ``RECORDED[kind][version]`` holds them for every
version of ``rule_versions.RULE_VERSIONS``. ``tests/unit/test_rule_versions.py`` fails when the
numbers of the current version move: a change of a rule's constants or code that changes its
results must bump the version (so no cache serves the old rule's results) and add a record:

    python -m attribution_core.rule_fingerprints   # prints the current fingerprints
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import torch
from torch import nn

RELATIVE_TOLERANCE = 1e-9  # float64 sums may differ in the last bits across BLAS kernels

RECORDED: dict[str, dict[int, tuple[float, ...]]] = {
    "integrated_gradients": {
        1: (
            1.96921327221772, 1.11054048427687, -4.06868231778508, 5.12718375271519,
            1.45447876778151, -5.46996325974929, 0.977002370929283, -0.23159103245578,
            -0.000510829725383743, 0.181032757306473, 2.6731658633535, -4.02211312464745,
            1.25604988709736, 3.51380238223945, -5.40141820497843, -0.811178143981965,
            1.33103434662085, 0.0460583634122491, 1.94966608526664, 0.481579420136335,
            -4.08630162609283, 5.52586155170775, 0.635056515499389, -5.49567636675327,
            0.957455183978198, -0.860552096596315, -0.0181301380331291, 3.77482853381383,
            1.17960588305251, -8.03614925588904, 7.30936006922484, 1.57795535881283,
            -11.4083744028199, 2.78261763252539, -0.162525633680138, -3.96797776782934,
        ),
    },
    "integrated_gradients.auto": {
        1: (  # Richardson 0.5 on the bisection change, over max |A|
            0.997177437803374, 1.34503365186491, -4.14605176838885, 3.11233324018662,
            1.77838323195275, -5.58776350753495, 53.0, 45.0, 9.0, 0.0360661178727218,
            0.0452814267768416, 0.0299421906782828, 0.992575976767386, 1.34608685769062,
            -4.08011821583877, 3.1036854071138, 1.77986441315165, -5.48723721642003, 84.0, 94.0,
            19.0, 0.00748868266521672, 0.0089918857058686, 0.00357834770220329, 0.992347010815377,
            1.3423796137372, -4.06945970719861, 3.102284395169, 1.77501452091374,
            -5.47112541053442, 129.0, 192.0, 51.0, 0.000945340669544415, 0.000776241974703186,
            0.000569452347960489,
        ),
        2: (  # shared bisection change x 1.5, spreads, lower bound, 17 nodes, resolution
            0.998067059070129, 1.3525006080069, -4.08354616139508, 3.11536769306744,
            1.78807002763797, -5.49251121502857, 45.0, 56.0, 18.0, 0.0441308081210299,
            0.0310607032258985, 0.00577964383095026, 0.991124916635632, 1.3438459302818,
            -4.08354616139508, 3.09934611061388, 1.77688701180293, -5.49251121502857, 74.0, 89.0,
            18.0, 0.00706235318113999, 0.00755522641069094, 0.00577964383095026,
            0.992213773058054, 1.34250619157083, -4.06944871677607, 3.10226144925885,
            1.77518080904803, -5.47112750526244, 114.0, 164.0, 58.0, 0.00089909322163377,
            0.000912888305993408, 0.000467159090035487,
        ),
    },
    "ig2": {
        1: (
            2.27957819154323, 3.9128064926391, -0.426674519490948, 3.7122058131558,
            5.67898708448542, -0.629709112033838, -2.63563545587771, -2.43448780454708,
            -4.17669339210081, -0.382113116986205, 0.297803479659218, -0.0277659337152789,
            -0.459499228442023, 0.43018069996616, -0.0538093241510196, 0.831448730359184,
            1.22690637763387, -4.5769622801959,
        ),
        2: (  # attributions unchanged; the per-feature convergence joins the numbers
            2.27957819154323, 3.9128064926391, -0.426674519490948, 3.7122058131558,
            5.67898708448542, -0.629709112033838, -2.63563545587771, -2.43448780454708,
            -4.17669339210081, 22.4012759238223, 3.78088679709633, 27.4386777581536,
            -0.382113116986205, 0.297803479659218, -0.0277659337152789, -0.459499228442023,
            0.43018069996616, -0.0538093241510196, 0.831448730359184, 1.22690637763387,
            -4.5769622801959, 23.4710085685561, 0.456080505848944, 20.4689322273145,
        ),
    },
}


class _Net(nn.Module):
    """3 -> 8 -> 8 -> 2 with tanh then ReLU, float64, weights from sines (no RNG)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(),
                                    nn.Linear(8, 2)).double()
        with torch.no_grad():
            for index, parameter in enumerate(self.parameters()):
                count = torch.arange(parameter.numel(), dtype=torch.float64)
                parameter.copy_(torch.sin(1.7 * count + 0.9 * index).view(parameter.shape)
                                * (1.5 if parameter.dim() == 2 else 0.3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def _problem() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    x = torch.tensor([[1.2, -0.7, 2.1], [-1.5, 0.4, 0.9], [0.3, 2.2, -1.8]], dtype=torch.float64)
    references = torch.tensor([[0.1, 0.2, -0.3], [-0.6, 1.0, 0.5]], dtype=torch.float64)
    return _Net().eval(), x, references


def _summary(attributions: torch.Tensor) -> list[float]:
    """Two weighted sums per explicand: any change of a single attribution moves them."""
    flat = attributions.detach().double().reshape(attributions.shape[0], -1)
    weights = torch.arange(1, flat.shape[1] + 1, dtype=torch.float64)
    return [*flat.sum(1).tolist(), *(flat * weights.sqrt()).sum(1).tolist()]


def _fixed() -> list[float]:
    from attribution_core import integrated_gradients

    model, x, _refs = _problem()
    numbers: list[float] = []
    for method, steps in (("gausslegendre", 7), ("riemann_trapezoid", 5),
                          ("riemann_middle", 4), ("riemann_left", 3)):
        result = integrated_gradients(model, x, target=[0, 1, 0], n_steps=steps, method=method)
        numbers += _summary(result.attributions) + result.delta.tolist()
    return numbers


def _auto() -> list[float]:
    from attribution_core import integrated_gradients

    model, x, _refs = _problem()
    numbers: list[float] = []
    for tolerance in (0.05, 0.01, 0.001):
        result = integrated_gradients(model, x, target=[0, 1, 0], n_steps="auto",
                                      tolerance=tolerance, max_evaluations=256)
        numbers += _summary(result.attributions) + result.n_evaluations.double().tolist()
        numbers += result.convergence.tolist()
    return numbers


def _ig2() -> list[float]:
    from attribution_core import ig2

    model, x, refs = _problem()
    numbers: list[float] = []
    for step_size in ("auto", 0.05):
        result = ig2(model, x, refs, target=[0, 1, 0], n_steps=6, step_size=step_size)
        numbers += _summary(result.attributions) + result.f_counterfactuals.tolist()
        if result.convergence is not None:  # version 2 on: the error bar is part of the rule
            numbers += result.convergence.double().tolist()
    return numbers


RULES: dict[str, Callable[[], list[float]]] = {
    "integrated_gradients": _fixed,
    "integrated_gradients.auto": _auto,
    "ig2": _ig2,
}


def fingerprint(kind: str) -> tuple[float, ...]:
    """The current numbers of ``kind``'s rule on the fixed problem."""
    return tuple(float(v) for v in RULES[kind]())


def mismatch(kind: str, version: int | None = None) -> str | None:
    """Why ``kind``'s current numbers do not match the record of ``version`` (default: the
    current one); None when they do."""
    from attribution_core.rule_versions import RULE_VERSIONS

    version = RULE_VERSIONS[kind] if version is None else version
    recorded = RECORDED.get(kind, {}).get(version)
    if not recorded:
        return f"{kind} version {version} has no recorded fingerprint"
    current = fingerprint(kind)
    if len(current) != len(recorded) or any(
            not math.isclose(a, b, rel_tol=RELATIVE_TOLERANCE, abs_tol=1e-12)
            for a, b in zip(current, recorded, strict=True)):
        return (f"{kind}'s numbers moved away from the record of version {version}: bump "
                f"RULE_VERSIONS[{kind!r}] and record the new fingerprint")
    return None


def main() -> None:
    print(json.dumps({kind: [float(f"{v:.15g}") for v in fingerprint(kind)] for kind in RULES},
                     indent=1))


if __name__ == "__main__":
    main()
