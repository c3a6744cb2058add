"""Attribution core: Integrated Gradients and IG2 over a batched, cached, device-aware engine.

This package never imports Streamlit; the dashboard is one client of it among others.
"""

from attribution_core.cache import ResultCache, fingerprint_model
from attribution_core.engine import describe_device, pick_device
from attribution_core.methods.ig import integrated_gradients
from attribution_core.results import Attribution

__all__ = [
    "Attribution",
    "ResultCache",
    "describe_device",
    "fingerprint_model",
    "integrated_gradients",
    "pick_device",
]
