"""Attribution methods: Integrated Gradients, IG2 and the comparison methods.

Every method returns a frozen result (``Attribution`` for all but IG2) with the same fields, so
the views and the faithfulness metrics in :mod:`attribution_core.metrics` work on any of them.
"""

from attribution_core.methods.gradient_shap import gradient_shap
from attribution_core.methods.gradient_x_input import gradient_x_input
from attribution_core.methods.saliency import saliency
from attribution_core.methods.smoothgrad import smoothgrad

__all__ = ["gradient_shap", "gradient_x_input", "saliency", "smoothgrad"]
