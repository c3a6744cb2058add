"""Every cached rule carries a version, and its numbers on a fixed float64 problem are recorded
per version: a change of a rule's numbers without a new version (and record) fails here, so no
cache can serve a result of the old rule under the new one."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from attribution_core.rule_fingerprints import RECORDED, RULES, fingerprint, mismatch
from attribution_core.rule_versions import RULE_VERSIONS


@pytest.mark.parametrize("kind", sorted(RULE_VERSIONS))
def test_the_current_numbers_match_the_current_version(kind: str) -> None:
    assert kind in RULES, f"{kind} has a fingerprint problem"
    problem = mismatch(kind)
    assert problem is None, problem


@pytest.mark.parametrize("kind", sorted(RULE_VERSIONS))
def test_every_version_is_recorded_once_with_its_own_numbers(kind: str) -> None:
    versions = sorted(RECORDED[kind])
    assert versions == list(range(1, RULE_VERSIONS[kind] + 1)), \
        f"{kind}: versions 1..{RULE_VERSIONS[kind]} are recorded, found {versions}"
    records = [RECORDED[kind][v] for v in versions]
    assert len(set(records)) == len(records), \
        f"{kind}: a new version comes with new numbers (two versions share a fingerprint)"


def _patch_auto_safety(monkeypatch: pytest.MonkeyPatch) -> None:
    from attribution_core.methods import _ig_estimate

    monkeypatch.setattr(_ig_estimate, "AUTO_SAFETY", 1.2)


def _patch_auto_min_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    from attribution_core.methods import _ig_adaptive

    monkeypatch.setattr(_ig_adaptive, "AUTO_MIN_NODES", 9)


def _patch_quadrature(monkeypatch: pytest.MonkeyPatch) -> None:
    from attribution_core.methods import ig
    from attribution_core.quadrature import quadrature

    monkeypatch.setattr(ig, "quadrature", lambda method, n: quadrature(
        "riemann_middle" if method == "riemann_left" else method, n))


def _patch_ig2_path_length(monkeypatch: pytest.MonkeyPatch) -> None:
    from attribution_core.methods import ig2

    monkeypatch.setattr(ig2, "AUTO_PATH_LENGTH", 1.1)


@pytest.mark.parametrize("kind, patch", [
    ("integrated_gradients.auto", _patch_auto_safety),
    ("integrated_gradients.auto", _patch_auto_min_nodes),
    ("integrated_gradients", _patch_quadrature),
    ("ig2", _patch_ig2_path_length),
], ids=["auto safety", "auto min nodes", "quadrature rule", "ig2 path length"])
def test_a_changed_constant_without_a_new_version_is_caught(
        kind: str, patch: Callable[[pytest.MonkeyPatch], None],
        monkeypatch: pytest.MonkeyPatch) -> None:
    before = fingerprint(kind)
    patch(monkeypatch)
    assert fingerprint(kind) != before, "the premise: the constant moves the numbers"
    assert mismatch(kind) is not None, \
        f"{kind}: a changed constant under the same version must fail the record check"
