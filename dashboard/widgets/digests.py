"""Short content digests for session-state keys and file names, built on the result cache's
own tensor hashing (``attribution_core.fingerprints.tensor_digest``: dtype, shape and bytes), so a
page's "same input" means what the cache means. No Streamlit here.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import torch

from attribution_core.fingerprints import tensor_digest

LENGTH = 16  # hex characters: 64 bits, ample for one session's inputs


def tensor_hex(tensor: torch.Tensor) -> str:
    """A tensor's digest by dtype, shape and bytes."""
    hasher = hashlib.sha256()
    tensor_digest(tensor, hasher)
    return hasher.hexdigest()[:LENGTH]


def array_hex(values: np.ndarray) -> str:
    """An array's digest, as the tensor it becomes (contiguous, its own dtype)."""
    return tensor_hex(torch.from_numpy(np.ascontiguousarray(values)))


def json_hex(value: Any, length: int = 20) -> str:
    """A JSON-able value's digest (keys sorted; anything else by ``str``): a page's run key."""
    payload = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:length]


def text_hex(text: str) -> str:
    """A text's digest (UTF-8; lone surrogates kept rather than refused)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:LENGTH]
