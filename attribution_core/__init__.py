"""Attribution core: Integrated Gradients and IG2 over a batched, cached, device-aware engine.

This package never imports Streamlit; the dashboard is one client of it among others.
"""

from attribution_core.cache import ResultCache
from attribution_core.devices import describe_device, pick_device
from attribution_core.fingerprints import fingerprint_model
from attribution_core.methods.ig import attribution_change, integrated_gradients, with_convergence
from attribution_core.methods.ig2 import ig2
from attribution_core.results import Attribution, IG2Attribution

__all__ = [
    "Attribution",
    "IG2Attribution",
    "ResultCache",
    "attribution_change",
    "describe_device",
    "fingerprint_model",
    "ig2",
    "integrated_gradients",
    "pick_device",
    "with_convergence",
]

# Comparison methods for the Evaluate page (also importable from attribution_core.methods).
from attribution_core.methods import (
    gradient_shap,
    gradient_x_input,
    saliency,
    smoothgrad,
)

__all__ += ["gradient_shap", "gradient_x_input", "saliency", "smoothgrad"]
