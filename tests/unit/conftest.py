"""Fixtures shared by the unit tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def float64_default():
    """Exact comparisons need float64; restore the default so other modules are unaffected.

    Modules opt in with ``pytestmark = pytest.mark.usefixtures("float64_default")``.
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)
