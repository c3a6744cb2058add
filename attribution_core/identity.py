"""What else, besides weights and input tensors, decides a result: the parts of a content key
that describe the model's structure, the numerical context of the call, and an upload as a whole.

- :func:`module_structure`: every submodule's name, type, ``extra_repr`` and training flag, and
  the plain attributes that configure it (bools, floats, strings, dtypes, functions). Two models
  with the same weights and a ReLU where the other has a Tanh, a Softplus of another beta, or a
  dropout layer in training mode are different models. Ints and containers are left out on
  purpose: a call counter (``self.calls += 1``) must not make every key new; a custom module
  configured by an int says so in its ``extra_repr``.
- :func:`execution_context`: autocast (per device type, with its dtype), the default dtype, the
  float32 matmul / convolution precision (TF32, reduced-precision reductions) and the
  deterministic flags, all of which change the numbers a model returns.
- :func:`upload_digest`: the sha256 of every part of an upload (weights, JSON config, class
  names, options), not of the weights file alone.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

# Attributes every nn.Module has (parameters, buffers, hooks, ...): covered elsewhere or not
# part of what the module computes (hooks are per call: IG2's probe ignores other threads).
_MODULE_INTERNALS = frozenset(vars(nn.Module())) | {"training"}
_PLAIN = (bool, float, str, complex, type(None), torch.dtype)
_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")
_AUTOCAST_DEVICES = ("cpu", "cuda", "mps", "xpu", "hpu")


def module_structure(module: nn.Module) -> str:
    """sha256 over every submodule's name, class, ``extra_repr``, training flag and plain
    configuring attributes (see the module docstring)."""
    hasher = hashlib.sha256()
    for name, sub in module.named_modules(remove_duplicate=False):
        kind = type(sub)
        hasher.update(f"{name}|{kind.__module__}.{kind.__qualname__}|{sub.training}|".encode())
        hasher.update(_masked(sub.extra_repr()).encode())
        for attribute in sorted(set(vars(sub)) - _MODULE_INTERNALS):
            described = _attribute_identity(vars(sub)[attribute])
            if described is not None:
                hasher.update(f"|{attribute}={described}".encode())
        hasher.update(b";")
    return hasher.hexdigest()


def _attribute_identity(value: Any) -> str | None:
    if isinstance(value, _PLAIN):
        return f"{type(value).__name__}:{value.hex() if isinstance(value, float) else value!r}"
    if isinstance(value, tuple) and all(isinstance(v, _PLAIN) for v in value):
        return repr(value)
    if isinstance(value, nn.Module) or not callable(value) or isinstance(value, type):
        return None
    return _code_identity(value)


def _code_identity(function: Callable[..., Any]) -> str:
    """Name and code of a function (no closure contents: a closure over the module itself must
    not recurse back into it)."""
    inner = getattr(function, "__func__", function)
    name = f"{getattr(inner, '__module__', '?')}.{getattr(inner, '__qualname__', '?')}"
    code = getattr(inner, "__code__", None)
    if code is None:
        return name
    return f"{name}:{hashlib.sha256(code.co_code + repr(code.co_consts).encode()).hexdigest()[:16]}"


def _masked(text: str) -> str:
    """A repr without memory addresses (two equal objects print different ``0x...``)."""
    return _ADDRESS.sub("0x?", text)


def execution_context() -> str:
    """The calling thread's numerical context: autocast per device type (and its dtype), the
    default dtype, float32 matmul/convolution precision and the deterministic flags."""
    parts = [f"default={torch.get_default_dtype()}"]
    for device_type in _AUTOCAST_DEVICES:
        try:
            if torch.is_autocast_enabled(device_type):
                parts.append(f"autocast[{device_type}]={torch.get_autocast_dtype(device_type)}")
        except RuntimeError:  # a device type this build does not know
            continue
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TF32 switches are being renamed
        matmul, cudnn, mkldnn = torch.backends.cuda.matmul, torch.backends.cudnn, \
            torch.backends.mkldnn
        flags = (torch.get_float32_matmul_precision(), matmul.allow_tf32, cudnn.allow_tf32,
                 matmul.allow_fp16_reduced_precision_reduction,
                 matmul.allow_bf16_reduced_precision_reduction,
                 getattr(matmul, "fp32_precision", "-"), getattr(cudnn, "fp32_precision", "-"),
                 getattr(mkldnn, "fp32_precision", "-"),
                 torch.are_deterministic_algorithms_enabled(), cudnn.deterministic)
        parts.append("precision=" + ",".join(str(flag) for flag in flags))
    return ";".join(parts)


def upload_digest(data: bytes, **parts: Any) -> str:
    """sha256 of an upload as a whole: the model file's bytes and every other part that shapes
    the model (a JSON config, class names, a normalisation choice), as canonical JSON."""
    hasher = hashlib.sha256(hashlib.sha256(data).digest())
    hasher.update(json.dumps(parts, sort_keys=True, default=_jsonable).encode())
    return hasher.hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):  # by dtype, shape and bytes (a reference CSV's rows)
        data = np.ascontiguousarray(value)
        return f"{data.dtype.str}{data.shape}:{hashlib.sha256(data.tobytes()).hexdigest()}"
    if isinstance(value, bytes):
        return hashlib.sha256(value).hexdigest()
    return _masked(repr(value))
