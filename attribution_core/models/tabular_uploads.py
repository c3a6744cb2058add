"""Which loader an uploaded tabular model needs: a model that encodes its columns (an ONNX
pipeline with categorical or imputed columns, an MLP with embeddings) is explained in its
encoded space (:mod:`.encoded_tabular`); anything else goes to :mod:`.onnx_models` whole."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from attribution_core.models.spec import ModelSpec


def encoded_upload_spec(data: bytes, file_name: str, *, config: Mapping[str, Any] | None = None,
                        reference: pd.DataFrame | None = None, label_column: str | None = None
                        ) -> ModelSpec | None:
    """The spec of an upload whose columns are encoded before the model, or None (the upload
    takes plain numbers: :func:`.onnx_models.tabular_upload_spec` loads it).

    ``reference``: the reference CSV as text cells, ``label_column`` its label column."""
    if file_name.lower().endswith(".onnx"):
        from attribution_core.models.onnx_categorical import categorical_onnx_spec

        return categorical_onnx_spec(data, file_name, reference=reference,
                                     label_column=label_column)
    if config and config.get("categorical"):
        from attribution_core.models.embedding_mlp import embedding_mlp_spec

        return embedding_mlp_spec(data, file_name, config, reference=reference,
                                  label_column=label_column)
    return None
