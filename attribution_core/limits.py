"""Limits on what one upload may cost the shared server, and linear-time checks that apply them.

The dashboard is one process serving strangers: an upload that takes seconds of pure-Python
work holds the GIL and stalls every other session, and one that decodes to gigabytes starves
them of memory. Every limit here is checked from cheap information (a header, a count, a
length) *before* the expensive work, and each one has its own message naming the limit, so a
person knows what to change. The pages state these limits next to their uploaders.

No Streamlit here; callers raise their own error type with the message.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable, Sequence

# -- uploads in general ----------------------------------------------------------------------
# The server's maxUploadSize (.streamlit/config.toml) is raised for model uploads (their own,
# configurable limit: attribution_core/models/uploads.py); every other uploader keeps this one.
OTHER_UPLOADS_MB = 50

# -- CSV ------------------------------------------------------------------------------------
MAX_CSV_COLUMNS = 2_000  # far above any model's features; pandas slows down per column
MAX_COLUMN_NAME_CHARS = 200
MAX_CSV_FIELD_CHARS = 5 * 2**20  # = the largest CSV accepted, so no field can exceed it

# -- images ---------------------------------------------------------------------------------
MAX_IMAGE_PIXELS = 25_000_000  # per upload, from the header: 75 MB while decoding as RGB
MAX_FRAMES_COUNTED = 64  # frames of a TIFF / GIF / WebP looked at; the first one is used
MAX_KEPT_SIDE = 2_048  # decoded images are box-reduced to this longer side (models are small)
SESSION_IMAGE_MEMO_BYTES = 96 * 2**20  # decoded pictures and predictions kept per session

# -- zip archives (Evaluate) ----------------------------------------------------------------
MAX_ZIP_ENTRIES = 5_000  # files and folders together, read from the end record first
MAX_ZIP_DIRECTORY_BYTES = 1 * 2**20  # the central directory, read before any member
MAX_ZIP_NAME_CHARS = 512  # one member's path, folders included
EVALUATE_MAX_TOTAL_PIXELS = 64_000_000  # decoded (and reduced) pixels of all cases together

# -- a model folder as a zip (text page: a Hugging Face classifier) ---------------------------
# The whole upload and its inflated total are bounded by the model-upload limit
# (IG_DASHBOARD_MAX_MODEL_UPLOAD_MB, attribution_core/models/uploads.py); these bound the rest.
MAX_MODEL_ZIP_ENTRIES = 64  # a Hugging Face classifier folder holds about 4 to 15 files
MAX_MODEL_JSON_BYTES = 4 * 2**20  # config.json, tokenizer_config.json, ...: each
MAX_MODEL_TOKENIZER_BYTES = 64 * 2**20  # tokenizer.json, vocab, merges, sentencepiece: each
MAX_REFERENCE_TEXTS = 500  # reference texts uploaded with a text model

# -- zero-shot labels (text page) -----------------------------------------------------------
MAX_ZERO_SHOT_LABELS = 20
MAX_LABEL_CHARS = 60
MAX_LABEL_DESCRIPTION_CHARS = 300

# The csv module's default field limit (131,072) turns a long header name into "field larger
# than field limit". The limit is process-wide, so it is raised once, here, to a fixed value
# no accepted file can exceed (never lowered, never toggled per call: other threads share it).
if csv.field_size_limit() < MAX_CSV_FIELD_CHARS:
    csv.field_size_limit(MAX_CSV_FIELD_CHARS)


def repeated(names: Iterable[str], *, ignore_empty: bool = False) -> list[str]:
    """Names that occur more than once, in order of first appearance (O(N), not O(N²))."""
    counts = Counter(names)
    return [name for name, count in counts.items()
            if count > 1 and not (ignore_empty and name == "")]


def header_problem(names: Sequence[str], what: str = "The CSV", *, ignore_empty: bool = False
                   ) -> str | None:
    """The one-line reason a CSV header is refused (too many / too long / repeated names),
    or None when it is fine. Linear in the header's size."""
    if len(names) > MAX_CSV_COLUMNS:
        return (f"{what} has {len(names):,} columns; at most {MAX_CSV_COLUMNS:,} are read. "
                "Keep the model's feature columns (and the optional ones) only.")
    longest = max((len(name) for name in names), default=0)
    if longest > MAX_COLUMN_NAME_CHARS:
        return (f"{what} has a column name of {longest:,} characters; at most "
                f"{MAX_COLUMN_NAME_CHARS} are accepted. Is the first line really a header?")
    duplicated = repeated(names, ignore_empty=ignore_empty)
    if duplicated:
        shown = ", ".join(repr(name) for name in duplicated[:5])
        more = f" and {len(duplicated) - 5:,} more" if len(duplicated) > 5 else ""
        return f"{what} repeats the column(s) {shown}{more}; each column needs its own name."
    return None
