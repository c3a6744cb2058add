"""The dashboard's import path for the preview (kept since fast paths were one module).

The preview lives in :mod:`attribution_core.preview`; the exact fast paths (channels_last,
torch.compile, thread count) in :mod:`attribution_core.tuning`.
"""

from attribution_core.preview import Preview, PreviewSummary, preview_ig, summarise_preview

__all__ = ["Preview", "PreviewSummary", "preview_ig", "summarise_preview"]
