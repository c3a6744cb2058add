"""A per-session memo bounded by the bytes it holds, not by its number of entries.

Sixteen entries was sixteen 120 MB canvases in the worst case; a byte budget keeps what a
session can pin on the shared server to ``SESSION_IMAGE_MEMO_BYTES`` whatever the entries are.
Entries are evicted oldest first; one entry larger than the whole budget is not kept at all.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image

from attribution_core.modalities.image import DecodedImage


def held_bytes(value: Any) -> int:
    """Bytes a memo entry keeps alive (pixels and tensors; small objects count as 1 KB)."""
    if isinstance(value, DecodedImage):
        value = value.image
    if isinstance(value, Image.Image):
        per_band = 4 if value.mode in ("I", "F") else 2 if value.mode.startswith("I;16") else 1
        return value.width * value.height * len(value.getbands()) * per_band
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    return 1024


class ByteBoundedMemo:
    """Key -> value, oldest evicted first once the values' bytes exceed ``budget``."""

    def __init__(self, budget: int, size_of: Callable[[Any], int] = held_bytes) -> None:
        self.budget = budget
        self._size_of = size_of
        self._entries: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self.held = 0

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Any:
        value, _ = self._entries[key]
        self._entries.move_to_end(key)
        return value

    def put(self, key: str, value: Any) -> None:
        size = self._size_of(value)
        if key in self._entries:
            self.held -= self._entries.pop(key)[1]
        if size > self.budget:
            return  # kept by the caller for this run only
        self._entries[key] = (value, size)
        self.held += size
        while self.held > self.budget:
            _, (_, evicted) = self._entries.popitem(last=False)
            self.held -= evicted

    def remembered(self, key: str, build: Callable[[], Any]) -> Any:
        """``build()`` once per key while it stays within the budget. Exceptions propagate and
        nothing is remembered for them (a MemoryError is never a result)."""
        if key in self._entries:
            return self.get(key)
        value = build()
        self.put(key, value)
        return value
