"""A safetensors file written tensor by tensor, so its maps never all sit in memory at once.

The safetensors library writes a file from a dict of tensors held in memory; a sharded run's
maps arrive shard by shard. The format is simple and documented (an 8-byte little-endian
header length, a JSON header naming each tensor's dtype, shape and byte range, then the
bytes), so :class:`TensorFileWriter` takes every tensor's dtype and shape first (the
header), then the tensors' bytes in the same order. Files it writes load with
``safetensors.safe_open`` / ``load_file`` like any other (the tests check that).

The header lists every tensor, so it grows with their number (117 bytes per map with the
report's index, measured at 20,000 maps) and is held in memory until the file is opened; the
library refuses headers over 100 MB. So a run with more than ``MAX_TENSORS`` maps keeps them
in its per-shard files only.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np

MAX_TENSORS = 100_000
_DTYPES = {np.dtype(np.float64): "F64", np.dtype(np.float32): "F32",
           np.dtype(np.float16): "F16", np.dtype(np.int64): "I64", np.dtype(np.int32): "I32",
           np.dtype(np.int16): "I16", np.dtype(np.int8): "I8", np.dtype(np.uint8): "U8",
           np.dtype(np.bool_): "BOOL"}


def dtype_name(dtype: np.dtype) -> str:
    try:
        return _DTYPES[np.dtype(dtype)]
    except KeyError as error:
        raise ValueError(f"safetensors has no dtype for numpy's {dtype}") from error


class TensorFileWriter:
    """``plan`` every tensor (key, dtype, shape), then write their values in that order."""

    def __init__(self) -> None:
        self._header: dict[str, object] = {}
        self._order: list[tuple[str, int]] = []
        self._offset = 0

    def __contains__(self, key: str) -> bool:
        return key in self._header

    def __len__(self) -> int:
        return len(self._order)

    def plan(self, key: str, dtype: np.dtype, shape: tuple[int, ...]) -> None:
        if key in self._header or key == "__metadata__":
            raise ValueError(f"the tensor {key!r} is planned twice")
        size = int(np.dtype(dtype).itemsize * int(np.prod(shape, dtype=np.int64)))
        self._header[key] = {"dtype": dtype_name(dtype), "shape": [int(n) for n in shape],
                             "data_offsets": [self._offset, self._offset + size]}
        self._order.append((key, size))
        self._offset += size

    @contextmanager
    def writing(self, path: Path, metadata: Mapping[str, str]
                ) -> Iterator[Callable[[np.ndarray], None]]:
        """Write the header; the ``write`` it yields takes the planned tensors' values in
        order (same dtype and shape as planned). Raises at the end unless all were written."""
        header = dict(self._header)
        header["__metadata__"] = dict(metadata)
        text = json.dumps(header, separators=(",", ":")).encode("utf-8")
        text += b" " * (-len(text) % 8)  # padded as the library pads: data starts aligned
        written = 0

        with Path(path).open("wb") as handle:
            handle.write(struct.pack("<Q", len(text)))
            handle.write(text)

            def write(array: np.ndarray) -> None:
                nonlocal written
                key, size = self._order[written]
                data = np.ascontiguousarray(array).tobytes()
                planned = self._header[key]
                if len(data) != size or dtype_name(array.dtype) != planned["dtype"]:  # type: ignore[index]
                    raise ValueError(f"the values for {key!r} ({array.dtype}, {len(data)} "
                                     f"bytes) are not what was planned ({planned})")
                handle.write(data)
                written += 1

            yield write
        if written != len(self._order):
            raise ValueError(f"{len(self._order) - written} planned tensors were not written")
