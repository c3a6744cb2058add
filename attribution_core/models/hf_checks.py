"""The sizes a Hugging Face text classifier's ``config.json`` declares, checked before
``transformers`` builds anything from it.

``from_pretrained`` builds the model the config describes and then fills it from the weights:
a 2 KB config that says ``vocab_size: 10**9`` made it allocate 64 GB for word embeddings the
weights did not hold, ``num_hidden_layers: 10000`` took 41 s of building, and
``num_labels: 10**9`` made the config itself name a billion labels. So, before any of it:

- :func:`check_declared_config` (in the dashboard's process and in the sandbox): every size
  field (under its own name or the model type's alias, e.g. DistilBERT's ``n_layers``) is a
  whole number within :data:`~attribution_core.limits.TEXT_CONFIG_LIMITS`, every other number
  within a general ceiling, ``id2label`` / ``label2id`` counted and their names bounded like
  class names, and the word embeddings the config asks for are no more than the weights hold
  (read from the safetensors headers, no tensor loaded);
- :func:`check_parameters` (in the sandbox only, :mod:`.hf_upload`'s trial): the model is
  built on PyTorch's meta device (shapes, no memory) and its parameters counted against the
  weights' headers, so every parameter ``from_pretrained`` would have to make up is refused
  before it is allocated.

No Streamlit; refusals are one-line :class:`ModelLoadError` s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attribution_core import limits
from attribution_core.models.spec import ModelLoadError
from attribution_core.models.upload_checks import (
    TensorEntry,
    check_class_count,
    check_class_names,
)

MAX_CONFIG_NUMBER = 2**24  # any other whole number in config.json (token ids, windows, ...)
# Parameters the weights may lack before the count refuses the upload (64 MB in float32): a
# few missing ones are named precisely after loading (a bare encoder's missing head, by name).
MAX_MADE_UP = 2**24
LABEL_MAPS = ("id2label", "label2id")


def check_declared_config(config: Mapping[str, Any], model_type: str,
                          weights: Mapping[str, TensorEntry], file_name: str) -> None:
    """Refuse a config whose declared sizes exceed the limits or the weights (see the module
    docstring); ``weights``: the safetensors headers' tensors, every shard together."""
    source = f"{file_name}: config.json's"
    for key in LABEL_MAPS:
        value = config.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise ModelLoadError(f"{source} {key} must be a JSON object.")
        check_class_count(len(value), f"{source} {key}")
        names = value.values() if key == "id2label" else value.keys()
        check_class_names(list(names), f"{source} {key}")
    sizes = _declared_sizes(config, model_type, source)
    words = sizes.get("vocab_size")
    widths = [sizes[k] for k in ("hidden_size", "embedding_size") if k in sizes]
    if words is not None and widths:  # the word embeddings: words x their narrowest width
        held = sum(math.prod(entry.shape) for entry in weights.values())
        wanted = words * min(widths)
        if wanted > held:
            raise ModelLoadError(
                f"{source} vocab_size of {words:,} words, {min(widths):,} values each, asks "
                f"for {wanted:,} word-embedding weights, but the safetensors weights hold "
                f"{held:,} values in all: the config does not describe these weights.")


def _declared_sizes(config: Mapping[str, Any], model_type: str, source: str
                    ) -> dict[str, int]:
    """The size fields under their canonical names (a model type's aliases resolved), each a
    whole number within its limit; every other top-level number within a general ceiling."""
    from transformers import CONFIG_MAPPING

    aliases = dict(getattr(CONFIG_MAPPING[model_type], "attribute_map", {}) or {})
    found: dict[str, int] = {}
    named: set[str] = set()
    for canonical, limit in limits.TEXT_CONFIG_LIMITS.items():
        for key in {canonical, aliases.get(canonical, canonical)}:
            if key not in config or config[key] is None:
                continue
            named.add(key)
            value = config[key]
            if type(value) is not int or value < 1:
                raise ModelLoadError(f"{source} {key} must be a whole number of at least 1 "
                                     f"(it is {str(value)[:40]!r}).")
            if value > limit:
                raise ModelLoadError(f"{source} {key} is {value:,}; at most {limit:,} are "
                                     "accepted.")
            found[canonical] = value
    for key, value in config.items():
        if key not in named and type(value) is int and abs(value) > MAX_CONFIG_NUMBER:
            raise ModelLoadError(f"{source} {str(key)[:40]} is {value:,}; numbers in a config "
                                 f"are accepted up to {MAX_CONFIG_NUMBER:,}.")
    return found


def check_parameters(folder: Path, weights: Mapping[str, TensorEntry], file_name: str) -> int:
    """The number of parameters the config describes, counted on a model built on the meta
    device (no memory), refused when the weights hold fewer values by more than
    :data:`MAX_MADE_UP`: ``from_pretrained`` would allocate and make up the rest. Run in the
    sandbox (building takes a second of Python for a large model). Returns the count."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    try:
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True,
                                            trust_remote_code=False)
        with torch.device("meta"):
            model = AutoModelForSequenceClassification.from_config(config,
                                                                   trust_remote_code=False)
    except Exception as error:
        text = str(error).replace(str(folder), file_name)
        raise ModelLoadError(f"{file_name}: config.json does not describe a sequence "
                             f"classifier transformers can build ({type(error).__name__}: "
                             f"{text[:300]}).") from error
    declared = sum(parameter.numel() for parameter in model.parameters())
    held = sum(math.prod(entry.shape) for entry in weights.values())
    if declared > held + MAX_MADE_UP:
        raise ModelLoadError(f"{file_name}: config.json describes a model of {declared:,} "
                             f"parameters but the safetensors weights hold {held:,} values: "
                             "transformers would make up the rest (a bare encoder without "
                             "its classification head, or a config of another model?).")
    return declared
