"""Choosing IG2's references from a labelled pool: seeded, deterministic, and shown to the user.

"other" draws samples of any class but the explicand's; "relevant" draws from the 2nd to 4th most
likely classes of the explicand (IG2.md: less noisy maps). Draws use their own generator, so the
global random state is neither used nor changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from attribution_core.validation import check_choice, check_positive_int, check_requirement

Strategy = Literal["other", "relevant"]
RELEVANT_RANKS = (1, 4)  # ranks 2nd..4th, 0-based, end exclusive


@dataclass(frozen=True)
class ReferenceSelection:
    """The chosen references: pool ``indices``, their ``inputs`` and ``labels``, and how."""

    indices: torch.Tensor  # [k] long, into the pool
    inputs: torch.Tensor  # [k, ...]
    labels: torch.Tensor  # [k]
    classes: tuple[int, ...]  # classes the draw was made from
    strategy: str
    seed: int

    @property
    def k(self) -> int:
        return int(self.indices.shape[0])


def select_references(pool_inputs: torch.Tensor, pool_labels: torch.Tensor | Sequence[int],
                      explicand_class: int, k: int = 8, seed: int = 0,
                      strategy: Strategy = "other",
                      class_ranking: torch.Tensor | Sequence[int] | None = None
                      ) -> ReferenceSelection:
    """Draw ``k`` references (fewer only if the eligible pool is smaller).

    ``class_ranking`` (needed for "relevant"): the model's output for the explicand (scores,
    e.g. logits [C]: ranked high to low) or class ids already ranked (integers). "relevant"
    takes the three most likely classes other than ``explicand_class`` and balances the draw
    over them (round robin, topping up from the others when a class runs short).

    Parameters
    ----------
    pool_inputs : tensor
        The labelled pool [M, ...] the references are taken from.
    pool_labels : tensor or sequence of int
        The class of every pool sample, M of them.
    explicand_class : int
        The explicand's class: never drawn.
    k : int, optional
        References wanted, >= 1 (default 8).
    seed : int, optional
        Seed of the draw's own generator (default 0); the global random state is untouched.
    strategy : {"other", "relevant"}, optional
        "other" (default): any class but ``explicand_class``; "relevant": the 2nd to 4th most
        likely classes of the explicand.
    class_ranking : tensor, sequence of int or None, optional
        Needed for "relevant": class scores (floating point, ranked high to low) or class ids
        already ranked (integers).

    Returns
    -------
    ReferenceSelection
        The pool ``indices`` drawn, their ``inputs`` (on ``pool_inputs``' device) and
        ``labels``, the ``classes`` drawn from, the ``strategy`` and the ``seed``.
    """
    labels = torch.as_tensor(pool_labels).reshape(-1).to("cpu", torch.long)
    check_requirement(pool_inputs.shape[0] == labels.shape[0],
                      f"The pool has {pool_inputs.shape[0]} inputs but {labels.shape[0]} labels.")
    check_positive_int("k", k)
    check_choice("strategy", strategy, ("other", "relevant"))
    if strategy == "other":
        classes = tuple(int(c) for c in torch.unique(labels).tolist() if c != explicand_class)
    elif strategy == "relevant":
        check_requirement(class_ranking is not None,
                          'strategy="relevant" needs class_ranking (the model\'s output for '
                          "the explicand, or ranked class ids).")
        assert class_ranking is not None
        ranked = [c for c in _ranked_classes(class_ranking) if c != explicand_class]
        classes = tuple(ranked[RELEVANT_RANKS[0] - 1:RELEVANT_RANKS[1] - 1])
    generator = torch.Generator().manual_seed(seed)
    per_class = {c: _shuffled(torch.nonzero(labels == c).reshape(-1), generator)
                 for c in classes}
    per_class = {c: v for c, v in per_class.items() if v.numel()}
    if not per_class:
        raise ValueError(f"The pool holds no sample of the classes {list(classes)} "
                         f"(strategy {strategy!r}, explicand class {explicand_class}).")
    if strategy == "other":
        chosen = _shuffled(torch.cat(list(per_class.values())), generator)[:k]
    else:
        chosen = _round_robin(list(per_class.values()), k)
    chosen = chosen.to(torch.long)
    device_index = chosen.to(pool_inputs.device)
    return ReferenceSelection(
        indices=chosen, inputs=pool_inputs.index_select(0, device_index),
        labels=labels.index_select(0, chosen), classes=tuple(per_class), strategy=strategy,
        seed=seed)


def _ranked_classes(class_ranking: torch.Tensor | Sequence[int]) -> list[int]:
    ranking = torch.as_tensor(class_ranking).reshape(-1)
    if ranking.is_floating_point():
        return torch.argsort(ranking.detach().cpu(), descending=True, stable=True).tolist()
    return [int(c) for c in ranking.tolist()]


def _shuffled(values: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return values[torch.randperm(values.numel(), generator=generator)]


def _round_robin(groups: list[torch.Tensor], k: int) -> torch.Tensor:
    """Take one from each group in turn until k are taken or every group is empty."""
    taken: list[int] = []
    position = 0
    while len(taken) < k and any(position < g.numel() for g in groups):
        for group in groups:
            if position < group.numel() and len(taken) < k:
                taken.append(int(group[position]))
        position += 1
    return torch.tensor(taken, dtype=torch.long)
