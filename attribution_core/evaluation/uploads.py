"""Evaluate-page uploads (a zip of images, a CSV of texts, a CSV of rows) -> raw case items.

A facade: the readers live in ``uploads_images`` (zip archives of images, masks and
``labels.csv``) and ``uploads_csv`` (text and row CSVs); callers import them from here so that
the split stays an internal detail.
"""

from __future__ import annotations

from attribution_core.evaluation.uploads_csv import (
    RowUpload,
    TextUpload,
    parse_expected_features,
    parse_expected_words,
    read_rows_csv,
    read_text_csv,
)
from attribution_core.evaluation.uploads_images import (
    LABELS_FILE,
    NOT_AN_IMAGE,
    RATIO_CHECK_FLOOR_BYTES,
    ImageUpload,
    bounded_read,
    read_image_zip,
)

__all__ = [
    "LABELS_FILE",
    "NOT_AN_IMAGE",
    "RATIO_CHECK_FLOOR_BYTES",
    "ImageUpload",
    "RowUpload",
    "TextUpload",
    "bounded_read",
    "parse_expected_features",
    "parse_expected_words",
    "read_image_zip",
    "read_rows_csv",
    "read_text_csv",
]
