"""Time to the message for each hostile upload (``python -m benchmarks.hostile_uploads``).

Each case runs in its own process so that its peak memory (ru_maxrss) is its own. Prints one
JSON line per case: seconds from bytes to the answer, the answer (the error type and the start
of its message, or "accepted"), the peak resident memory of the process, and the bytes of
decoded pixels the answer keeps (images only).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from tests import hostile_files as hostile


def _kept_bytes(answer: Any) -> int:
    items = getattr(answer, "items", ())
    images = [answer.image] if hasattr(answer, "image") else \
        [item.image for item in items] if isinstance(items, tuple) else []
    return sum(len(image.getbands()) * image.width * image.height
               * (2 if image.mode.startswith("I;16") else 1) for image in images)


def _cases() -> dict[str, Callable[[], Callable[[], Any]]]:
    from attribution_core.evaluation import uploads
    from attribution_core.modalities import image, tabular

    def labels() -> Callable[[], Any]:
        from dashboard.components.text_inputs import parse_labels
        typed = hostile.long_label_set()
        return lambda: parse_labels(typed)

    def labels_to_model() -> Callable[[], Any]:
        import torch

        from attribution_core.models.builtin_text import zero_shot_spec
        from dashboard.components.text_inputs import parse_labels
        typed = hostile.long_label_set()

        def run() -> Any:
            spec = zero_shot_spec("minilm_topic_custom_bench", parse_labels(typed))
            return spec.loader(torch.device("cpu"))
        return run

    def build(read: Callable[[bytes], Any], make: Callable[[], bytes]
              ) -> Callable[[], Callable[[], Any]]:
        def prepared() -> Callable[[], Any]:
            data = make()
            return lambda: read(data)
        return prepared

    return {
        "csv: 160k duplicate header names (tabular page)":
            build(tabular.parse_csv, lambda: hostile.duplicate_header_csv(160_000)),
        "csv: 160k duplicate header names (Evaluate)":
            build(uploads.read_text_csv, lambda: hostile.duplicate_header_csv(160_000)),
        "csv: 200k-character header name (tabular page)":
            build(tabular.parse_csv, hostile.long_header_field_csv),
        "tiff: 64k pages": build(image.decode_image, lambda: hostile.many_page_tiff(64_000)),
        "tiff: 128k pages (13 MB)":
            build(image.decode_image, lambda: hostile.many_page_tiff(128_000)),
        "tiff: second page without a size":
            build(image.decode_image, hostile.sizeless_second_page_tiff),
        "zip: that tiff plus a good png (Evaluate)":
            build(uploads.read_image_zip, lambda: hostile.zip_of(
                [("bad.tif", hostile.sizeless_second_page_tiff()),
                 ("good.png", hostile.tiny_png())])),
        "zip: 16 members 32k folders deep":
            build(uploads.read_image_zip, hostile.deep_names_zip),
        "zip: 200k empty members": build(uploads.read_image_zip, hostile.many_members_zip),
        "labels: 500 x 2,000 characters (parse only)": labels,
        "labels: 500 x 2,000 characters (parse, then the model embeds them)": labels_to_model,
        "png: flat 6324x6324 RGB (132 KB)":
            build(image.decode_image, lambda: hostile.solid_png(6324)),
        "png: flat 6324x6324 16-bit grey":
            build(image.decode_image, lambda: hostile.solid_png(6324, "I;16")),
        "zip: 10 flat 6324x6324 PNGs (Evaluate)":
            build(uploads.read_image_zip, hostile.big_pixels_zip),
        "csv: 2,000 duplicate header names (under the column cap)":
            build(tabular.parse_csv, lambda: hostile.duplicate_header_csv(2_000)),
        "png: flat 5000x5000 RGB (under the pixel cap)":
            build(image.decode_image, lambda: hostile.solid_png(5000)),
        "png: flat 5000x5000 16-bit grey (under the pixel cap)":
            build(image.decode_image, lambda: hostile.solid_png(5000, "I;16")),
        "zip: 10 flat 5000x5000 PNGs (Evaluate, under the pixel cap)":
            build(uploads.read_image_zip, lambda: hostile.big_pixels_zip(10, 5000)),
    }


def run_case(name: str) -> dict[str, Any]:
    call = _cases()[name]()
    start = time.perf_counter()
    try:
        answer = call()
        outcome, kept = "accepted", _kept_bytes(answer)
    except Exception as error:  # the point is to record what happened, whatever it was
        outcome, kept = f"{type(error).__name__}: {str(error)[:90]}", 0
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"case": name, "seconds": round(seconds, 3), "answer": outcome,
            "peak_rss_mb": round(peak_mb), "kept_mb": round(kept / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--case", help="run one case in this process")
    parser.add_argument("--only", default="", help="run the cases whose name contains this")
    arguments = parser.parse_args()
    if arguments.case:
        print(json.dumps(run_case(arguments.case)))
        return
    for name in _cases():
        if arguments.only in name:
            subprocess.run([sys.executable, "-m", "benchmarks.hostile_uploads", "--case", name],
                           check=False, timeout=600)


if __name__ == "__main__":
    main()
