"""A Hugging Face image classifier a user names, as a spec for that user's session.

The source goes through the server's source policy first (:mod:`.sources`: a hub id already in
the local cache or a folder under the operator's model roots; every refusal reads the same), then
``AutoModelForImageClassification`` + ``AutoImageProcessor`` load it with
``trust_remote_code=False`` and no downloads (:func:`.hf.load_hf_image_classifier`).
"""

from __future__ import annotations

from PIL import Image

from attribution_core.models.hf import load_hf_image_classifier
from attribution_core.models.plugin_specs import build_spec
from attribution_core.models.sources import resolve_model_source
from attribution_core.models.spec import ModelSpec
from attribution_core.models.upload_checks import check_class_names


def hugging_face_image_spec(typed: str) -> ModelSpec:
    """The spec of the image classifier ``typed`` names (hub id or shared folder)."""
    resolved = resolve_model_source(typed)
    loaded = load_hf_image_classifier(resolved.load_path, device="cpu", allow_download=False,
                                      display_name=resolved.display_name)
    inner = loaded.module.model  # HFImageClassifier; the normalisation is rebuilt by build_spec
    probe = loaded.preprocess(Image.new("RGB", (32, 32)))  # the processor's own input size
    height, width = (int(v) for v in probe.shape[-2:])
    return build_spec(
        f"hf-image:{loaded.weights_hash[:12]}", inner, "image",
        class_names=check_class_names(loaded.spec.class_names, resolved.display_name),
        title=f"Hugging Face image classifier {resolved.display_name}",
        description=f"{type(inner.model).__name__} from {resolved.kind}; its image processor "
                    "resizes and crops, the normalisation is applied inside the model.",
        input_size=(height, width), mean=loaded.extras["mean"], std=loaded.extras["std"],
        source="huggingface", weights_sha256=loaded.weights_hash,
        preprocess=loaded.preprocess, metadata={"source": resolved.display_name})
