"""Time and memory to the answer for each hostile upload (``python -m benchmarks.hostile_uploads``).

The parent builds every hostile file (tests/hostile_files.py, tests/hostile_models.py) and hands
it to a fresh process per case, so that each case's memory is its own: the child reads the
bytes, notes its resident memory, runs the reader and reports the seconds to the answer, the
answer (the error type and the start of its message, or "accepted"), the extra peak memory of
the call (VmHWM after minus VmRSS before) and the bytes of decoded pixels the answer keeps
(images only). One JSON line per case.

Model uploads (issue 24, benchmarks/hostile_model_cases.py) run in a folder holding a secret,
after what a running dashboard has done before an upload (imports, the graph checker started);
their rows add the peak memory of the graph check's own process (``check_peak_mb``), the
longest another session's thread waited for the interpreter meanwhile (``stall_ms``), whether
anything of the server came back (``exposed``) and ``handled`` (a one-line refusal within 8 s
and 500 MB, nothing exposed). The last line counts the handled model cases and says whether
every external-data case got the same answer (no file-existence or size oracle).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import hostile_model_cases as models
from tests import hostile_files as hostile

Reader = Callable[[bytes], Any]


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _kept_bytes(answer: Any) -> int:
    items = getattr(answer, "items", ())
    images = [answer.image] if hasattr(answer, "image") else \
        [item.image for item in items] if isinstance(items, tuple) else []
    return sum(len(image.getbands()) * image.width * image.height
               * (2 if image.mode.startswith("I;16") else 1) for image in images)


def _readers() -> dict[str, Reader]:
    """The readers, imported before the clock starts."""
    import torch

    from attribution_core.evaluation import uploads
    from attribution_core.modalities import image, tabular
    from attribution_core.models.builtin_text import zero_shot_spec
    from dashboard.text.inputs import parse_labels

    def labels(data: bytes) -> Any:
        return parse_labels(data.decode())

    def _labels_then_model(data: bytes) -> Any:
        spec = zero_shot_spec("minilm_topic_custom_bench", parse_labels(data.decode()))
        return spec.loader(torch.device("cpu"))

    return {"tabular": tabular.parse_csv, "text_csv": uploads.read_text_csv,
            "image": image.decode_image, "zip": uploads.read_image_zip, "labels": labels,
            "labels_model": _labels_then_model, **models.readers()}


CASES: dict[str, tuple[str, Callable[[], bytes]]] = {
    "csv: 160k duplicate header names (tabular page)":
        ("tabular", lambda: hostile.duplicate_header_csv(160_000)),
    "csv: 160k duplicate header names (Evaluate)":
        ("text_csv", lambda: hostile.duplicate_header_csv(160_000)),
    "csv: 2,000 duplicate header names (under the column cap)":
        ("tabular", lambda: hostile.duplicate_header_csv(2_000)),
    "csv: 200k-character header name (tabular page)":
        ("tabular", hostile.long_header_field_csv),
    "tiff: 64k pages": ("image", lambda: hostile.many_page_tiff(64_000)),
    "tiff: 128k pages (13 MB)": ("image", lambda: hostile.many_page_tiff(128_000)),
    "tiff: second page without a size": ("image", hostile.sizeless_second_page_tiff),
    "zip: that tiff plus a good png (Evaluate)":
        ("zip", lambda: hostile.zip_of([("bad.tif", hostile.sizeless_second_page_tiff()),
                                        ("good.png", hostile.tiny_png())])),
    "zip: 16 members 32k folders deep": ("zip", hostile.deep_names_zip),
    "zip: 200k empty members": ("zip", hostile.many_members_zip),
    "labels: 500 x 2,000 characters (parse only)":
        ("labels", lambda: hostile.long_label_set().encode()),
    "labels: 500 x 2,000 characters (parse, then the model embeds them)":
        ("labels_model", lambda: hostile.long_label_set().encode()),
    "png: flat 6324x6324 RGB (132 KB)": ("image", lambda: hostile.solid_png(6324)),
    "png: flat 6324x6324 16-bit grey": ("image", lambda: hostile.solid_png(6324, "I;16")),
    "png: flat 5000x5000 RGB (under the pixel cap)": ("image", lambda: hostile.solid_png(5000)),
    "png: flat 5000x5000 16-bit grey (under the pixel cap)":
        ("image", lambda: hostile.solid_png(5000, "I;16")),
    "zip: 10 flat 6324x6324 PNGs (Evaluate)": ("zip", hostile.big_pixels_zip),
    "zip: 10 flat 5000x5000 PNGs (Evaluate, under the pixel cap)":
        ("zip", lambda: hostile.big_pixels_zip(10, 5000)),
    **models.CASES,
}


def run_case(name: str, data_path: Path) -> dict[str, Any]:
    kind = CASES[name][0]
    reader = _readers()[kind]
    data = data_path.read_bytes()
    model_case = name in models.CASES
    if model_case:
        models.enter_server_folder()
        models.warm_up()
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM from here on
    ticker = _Ticker() if model_case else None
    before_mb = _status_mb("VmRSS")
    start = time.perf_counter()
    answer: Any = None
    failure: BaseException | None = None
    try:
        answer = reader(data)
        outcome, kept = "accepted", _kept_bytes(answer)
    except Exception as error:  # the point is to record what happened, whatever it was
        failure = error
        outcome, kept = f"{type(error).__name__}: {str(error)[:90]}", 0
    seconds = time.perf_counter() - start
    stall_ms = ticker.stop() if ticker is not None else None
    row = {"case": name, "seconds": round(seconds, 3), "answer": outcome,
           "extra_peak_mb": round(_status_mb("VmHWM") - before_mb),
           "kept_mb": round(kept / 2**20, 1), "file_kb": round(len(data) / 1024)}
    if model_case:
        row["stall_ms"] = stall_ms  # the longest another session's thread waited meanwhile
        row.update(models.outcome(kind, answer, failure))
        row["handled"] = models.handled(row)
    return row


class _Ticker:
    """A thread standing in for another session: it wakes every 5 ms and records the longest
    gap between wake-ups, i.e. how long the case kept the interpreter from it."""

    def __init__(self) -> None:
        self._running = True
        self._longest = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last = time.perf_counter()
        while self._running:
            time.sleep(0.005)
            now = time.perf_counter()
            self._longest = max(self._longest, now - last)
            last = now

    def stop(self) -> int:
        self._running = False
        self._thread.join()
        return round(1000 * self._longest)


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    model_rows = [row for row in rows if row["case"] in models.CASES]
    external = {row["answer"] for row in model_rows if row["case"].startswith(models.EXTERNAL)}
    return {"summary": "model uploads (issue 24)",
            "handled": sum(bool(row.get("handled")) for row in model_rows),
            "cases": len(model_rows),
            "external_answers_identical": len(external) == 1 if external else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--case", help="run one case in this process (with --data)")
    parser.add_argument("--data", type=Path, help="the case's file")
    parser.add_argument("--only", default="", help="run the cases whose name contains this")
    parser.add_argument("--models", action="store_true",
                        help="only the model-upload cases (issue 24)")
    parser.add_argument("--case-timeout", type=float, default=120.0,
                        help="seconds a case may take before it is recorded as unanswered")
    arguments = parser.parse_args()
    if arguments.case:
        print(json.dumps(run_case(arguments.case, arguments.data)), flush=True)
        return
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, (_, make) in CASES.items():
            if arguments.only not in name or (arguments.models and name not in models.CASES):
                continue
            path = Path(folder) / "case.bin"
            path.write_bytes(make())
            rows.append(_run_child(name, path, arguments.case_timeout))
            print(json.dumps(rows[-1]), flush=True)
    if any(row["case"] in models.CASES for row in rows):
        print(json.dumps(_summary(rows)), flush=True)


def _run_child(name: str, path: Path, timeout: float) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.hostile_uploads", "--case", name, "--data",
               str(path)]
    try:
        done = subprocess.run(command, check=False, timeout=timeout, capture_output=True,
                              text=True)
    except subprocess.TimeoutExpired:
        return {"case": name, "seconds": timeout, "answer": f"no answer within {timeout:g} s",
                "handled": False}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"case": name, "answer": f"the process ended ({done.returncode}): {tail[:120]}",
                "handled": False}
    return dict(json.loads(lines[-1]))


if __name__ == "__main__":
    main()
