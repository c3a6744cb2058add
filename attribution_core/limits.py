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
from types import MappingProxyType

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

# -- models a user uploads ("Your model") ----------------------------------------------------
# Everything a model file says about its own size is checked against these before anything is
# allocated or run (attribution_core/models/upload_checks.py, onnx_checks.py), and the graph is
# then converted and run once in a child process with a time and memory budget (sandbox.py).
MAX_MODEL_FEATURES = MAX_CSV_COLUMNS  # a tabular model's inputs: its rows come from such CSVs
MAX_MODEL_CLASSES = 22_000  # ImageNet-21k's 21,843 classes fit
MAX_MODEL_NAME_CHARS = MAX_COLUMN_NAME_CHARS  # one class or feature name
# All class names together: they travel to the browser with every "Class to explain" list.
MAX_MODEL_NAMES_TOTAL_CHARS = 1_000_000
MAX_SAFETENSORS_HEADER_BYTES = 4 * 2**20  # vit_b_16's header is 14 KB, densenet121's 100 KB
MAX_SAFETENSORS_TENSORS = 10_000  # densenet121 has about 1,000 (batch norms included)
MAX_TENSOR_RANK = 8
MAX_ONNX_NODES = 20_000  # an exported vit_b_16 has about 1,500
MAX_ONNX_TENSORS = 20_000  # initializers and constants, subgraphs included
MAX_ONNX_GRAPH_DEPTH = 4  # If / Loop / Scan bodies inside bodies
# A tensor the graph computes for one row (batch 1), when its shape is known statically: a
# resnet50 at 224 px peaks at 0.8 M elements, a 1024 px input's first convolution at 17 M.
MAX_COMPUTED_ELEMENTS = 32_000_000  # 128 MB in float32
MAX_IMAGE_MODEL_SIDE = 1_024  # declared height / width of an image model's input
MAX_IMAGE_MODEL_CHANNELS = 4
MAX_MODEL_FORWARD_FLOPS = 100e9  # per row, from the graph's shapes (vit_b_16: 35 G)
# The child process that converts and runs an uploaded graph once (seconds of wall-clock time,
# and memory on top of what it starts with: a base plus a multiple of the upload's size, so a
# 300 MB model can be converted while a 14 KB one cannot claim gigabytes).
MODEL_CHECK_SECONDS = 6.0
MODEL_CHECK_SECONDS_PER_MB = 0.025  # and 1 s more per 40 MB uploaded: inflating, reading
MODEL_CHECK_BASE_BYTES = 384 * 2**20
MODEL_CHECK_BYTES_PER_UPLOAD_BYTE = 4
MAX_UPLOAD_ROW_SECONDS = 1.0  # one row's forward + backward pass in that check

# Tables whose columns are encoded before the model (ONNX pipelines, embedding MLPs).
MAX_COLUMN_CATEGORIES = 1_000  # a pipeline column's categories (each one is probed)
MAX_ENCODER_CATEGORIES = 2 * MAX_COLUMN_CATEGORIES  # one encoder's list in a graph
MAX_EMBEDDING_CATEGORIES = 100_000  # an embedding table's rows (one lookup each, no probe)
MAX_ENCODED_WIDTH = 20_000  # slots of an encoded row (one-hot slots, embeddings)
# A Hugging Face text classifier's config.json, read before transformers builds anything;
# the largest public classifiers fit (xlm-roberta: 250,002 words; deberta-v2-xxlarge: 48
# layers, 1,536 wide, 6,144 intermediate). The weights must then hold what the config asks
# for (checked in the sandbox on the model built on PyTorch's meta device, no memory).
TEXT_CONFIG_LIMITS = MappingProxyType({
    "vocab_size": 1_000_000, "hidden_size": 16_384, "num_hidden_layers": 128,
    "intermediate_size": 65_536, "max_position_embeddings": 1_048_576,
    "num_attention_heads": 1_024, "embedding_size": 16_384, "type_vocab_size": 1_024,
    "num_labels": MAX_MODEL_CLASSES})

# -- what one browser session may hold ----------------------------------------------------
MAX_OWN_MODELS_PER_SESSION = 2  # models a user loaded (uploads, Hugging Face); oldest leave
SMALL_UPLOADS_MB = 4  # class-name lists, JSON configs: far above any real one

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
