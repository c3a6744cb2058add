"""The byte-bounded session memo and the one-line messages for unexpected failures."""

from __future__ import annotations

import logging
import re

import pytest
import torch
from PIL import Image

from dashboard.widgets.errors import unexpected_message
from dashboard.widgets.memo import ByteBoundedMemo, held_bytes


def test_held_bytes_counts_pixels_and_tensor_elements() -> None:
    assert held_bytes(Image.new("RGB", (10, 20))) == 600, "3 bytes per RGB pixel"
    assert held_bytes(Image.new("I;16", (10, 20))) == 400, "2 bytes per 16-bit pixel"
    assert held_bytes(torch.zeros(5, dtype=torch.float32)) == 20, "4 bytes per float32"


def test_oldest_entries_go_once_the_bytes_exceed_the_budget() -> None:
    memo = ByteBoundedMemo(budget=1000, size_of=len)
    for key in "abc":
        memo.put(key, "x" * 400)
    assert "a" not in memo and "b" in memo and "c" in memo, "the oldest went first"
    assert memo.held == 800, f"bytes held: {memo.held}"
    memo.get("b")  # used: now the newest
    memo.put("d", "x" * 400)
    assert "c" not in memo and "b" in memo, "least recently used goes first"


def test_an_entry_larger_than_the_budget_is_returned_but_not_kept() -> None:
    memo = ByteBoundedMemo(budget=100, size_of=len)
    assert memo.remembered("big", lambda: "x" * 500) == "x" * 500, "the value is returned"
    assert "big" not in memo and memo.held == 0, "but not kept"


def test_a_failure_is_never_remembered() -> None:
    memo = ByteBoundedMemo(budget=100, size_of=len)

    def out_of_memory() -> str:
        raise MemoryError

    with pytest.raises(MemoryError):
        memo.remembered("k", out_of_memory)
    assert memo.remembered("k", lambda: "fine") == "fine", "a later try runs again"


def test_unexpected_failures_give_one_line_and_a_logged_reference(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="dashboard"):
        message = unexpected_message(KeyError("/srv/secret/path"), "Reading a.png")
    found = re.search(r"reference ([0-9a-f]{8})", message)
    assert found is not None and "\n" not in message, f"one line with a reference: {message}"
    assert "/srv/secret/path" not in message, "no internals on the page"
    logged = [r for r in caplog.records if found.group(1) in r.getMessage()]
    assert logged and logged[0].exc_info is not None, "the traceback is in the log"
    memory = unexpected_message(MemoryError(), "Reading a.png")
    assert "more memory than the server could give" in memory, memory
