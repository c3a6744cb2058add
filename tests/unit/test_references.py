"""Reference selection for IG2: class rules, seeding, balance, errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from attribution_core.references import ReferenceSelection, select_references


def pool(n_per_class: int = 10, n_classes: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.arange(n_classes).repeat_interleave(n_per_class)
    inputs = torch.arange(labels.numel(), dtype=torch.float64).view(-1, 1) * 10.0
    return inputs, labels


def test_other_excludes_the_explicand_class_and_returns_matching_rows() -> None:
    inputs, labels = pool()
    chosen = select_references(inputs, labels, explicand_class=2, k=8, seed=0)
    assert chosen.k == 8, "k references asked for and available"
    assert not bool((chosen.labels == 2).any()), "no reference may share the explicand's class"
    assert torch.equal(chosen.inputs, inputs[chosen.indices]), "inputs are the pool rows chosen"
    assert torch.equal(chosen.labels, labels[chosen.indices]), "labels are the pool labels"
    assert len(set(chosen.indices.tolist())) == 8, "drawn without replacement"
    assert 2 not in chosen.classes, "the explicand class is not among the classes drawn from"


def test_seeded_draws_repeat_and_differ_between_seeds() -> None:
    inputs, labels = pool()
    before = torch.random.get_rng_state()
    first = select_references(inputs, labels, 0, k=6, seed=7)
    again = select_references(inputs, labels, 0, k=6, seed=7)
    other = select_references(inputs, labels, 0, k=6, seed=8)
    assert torch.equal(first.indices, again.indices), "same seed, same references"
    assert not torch.equal(first.indices, other.indices), "another seed draws other references"
    assert torch.equal(before, torch.random.get_rng_state()), "the global RNG is left alone"


def test_relevant_takes_the_second_to_fourth_classes_from_logits() -> None:
    inputs, labels = pool()
    logits = torch.tensor([0.1, 3.0, 2.0, 5.0, 1.0])  # ranking: 3, 1, 2, 4, 0
    chosen = select_references(inputs, labels, explicand_class=3, k=6, seed=1,
                               strategy="relevant", class_ranking=logits)
    assert set(chosen.classes) == {1, 2, 4}, f"2nd-4th most likely classes, got {chosen.classes}"
    counts = torch.bincount(chosen.labels, minlength=5)
    assert counts[[1, 2, 4]].tolist() == [2, 2, 2], f"balanced over the classes, got {counts}"


def test_relevant_accepts_a_ranking_of_class_ids_and_tops_up_short_classes() -> None:
    inputs = torch.arange(13, dtype=torch.float64).view(-1, 1)
    labels = torch.tensor([0] * 5 + [1] * 1 + [2] * 5 + [3] * 2)
    chosen = select_references(inputs, labels, explicand_class=0, k=7, seed=0,
                               strategy="relevant", class_ranking=[0, 1, 3, 2])
    counts = torch.bincount(chosen.labels, minlength=4).tolist()
    assert counts == [0, 1, 4, 2], f"class 1 has one sample, the rest come from 2 and 3: {counts}"


def test_fewer_eligible_samples_than_k_and_empty_pools() -> None:
    inputs, labels = pool(n_per_class=2, n_classes=2)
    chosen = select_references(inputs, labels, explicand_class=0, k=8)
    assert chosen.k == 2, "only the two samples of class 1 are eligible"
    with pytest.raises(ValueError, match="no sample"):
        select_references(inputs[:2], labels[:2], explicand_class=0)
    with pytest.raises(ValueError, match="class_ranking"):
        select_references(inputs, labels, 0, strategy="relevant")
    with pytest.raises(ValueError, match="strategy"):
        select_references(inputs, labels, 0, strategy="nearest")  # type: ignore[arg-type]


def test_selection_is_frozen() -> None:
    inputs, labels = pool()
    chosen = select_references(inputs, labels, 1, k=2)
    assert isinstance(chosen, ReferenceSelection), "a ReferenceSelection comes back"
    with pytest.raises(dataclasses.FrozenInstanceError):
        chosen.seed = 3  # type: ignore[misc]
