"""What the batch command line's engines share, below both of them.

``cli`` (argument parsing, the local engine) and ``cli_scale`` (the sharded engine on Ray)
both raise :class:`CommandError`, read bounded files and print the same one-line summary;
``shard_inputs`` reads ``--expected`` the way the local engine does. Keeping these here, with
no import of either engine, is what keeps the command line's modules free of import circles:
``cli`` -> ``cli_scale`` -> ``shard_inputs`` / ``sharded_run`` / ``ray_engine`` ->
``command_common``.
"""

from __future__ import annotations

import csv
import io
import math
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Same budgets as the page's zip upload: a folder is read into memory before it is decoded.
MAX_FOLDER_BYTES = 200 * 2**20
MAX_CSV_BYTES = 50 * 2**20


class CommandError(Exception):
    """A problem with the command line or its files; the message is printed as is."""


def read_limited(path: Path, limit: int) -> bytes:
    size = path.stat().st_size
    if size > limit:
        raise CommandError(f"{path} is {size / 2**20:.0f} MB; the limit is {limit / 2**20:.0f} MB.")
    return path.read_bytes()


def zip_folder(folder: Path, limit: int = MAX_FOLDER_BYTES) -> bytes:
    """A folder's files as an in-memory zip, so folders and zips share one validated reader."""
    files = sorted(p for p in folder.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise CommandError(f"The folder {folder} holds no files.")
    total = sum(p.stat().st_size for p in files)
    if total > limit:
        raise CommandError(f"The folder {folder} holds {total / 2**20:.0f} MB; the limit is "
                           f"{limit / 2**20:.0f} MB. Evaluate fewer images at once.")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for path in files:
            archive.writestr(path.relative_to(folder).as_posix(), path.read_bytes())
    return buffer.getvalue()


def mask_files(folder: Path) -> dict[str, Path]:
    """Image stem -> its mask file in ``folder`` (``<stem>.png`` or ``<stem>_mask.png``)."""
    from attribution_core.modalities.image import UPLOAD_EXTENSIONS

    masks: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower().lstrip(".") in UPLOAD_EXTENSIONS:
            stem = path.stem[:-len("_mask")] if path.stem.lower().endswith("_mask") else path.stem
            masks[stem] = path
    return masks


def expected_by_name(path: Path) -> dict[str, str]:
    """``--expected`` for texts and rows: case name -> its expected words or features."""
    text = read_limited(path, MAX_CSV_BYTES).decode("utf-8-sig", errors="replace")
    reader = csv.DictReader(io.StringIO(text))
    columns = {c.lower().strip(): c for c in reader.fieldnames or ()}
    name_column = columns.get("name") or columns.get("id")
    if name_column is None or "expected" not in columns:
        raise CommandError(f"--expected {path} needs the columns name (or id) and expected; "
                           f"found {', '.join(reader.fieldnames or ()) or 'no header'}.")
    return {row[name_column]: row[columns["expected"]] or "" for row in reader
            if row.get(name_column)}


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def summary_line(*, model_name: str, n_cases: int, n_requested: int, cancelled: bool,
                 seconds: float, summaries: Sequence[Any], files: Any) -> dict[str, Any]:
    """The one line of JSON on stdout, the same for both engines (``summaries``:
    :class:`~attribution_core.evaluation.types.MethodSummary` items)."""
    return {
        "json": str(files.json_path), "html": str(files.html_path),
        "attributions": str(files.attributions_path), "model": model_name,
        "n_cases": n_cases, "n_requested": n_requested,
        "cancelled": cancelled, "seconds": round(seconds, 3),
        "methods": {s.method: {"deletion_auc_mean": _finite_or_none(s.deletion_auc_mean),
                               "insertion_auc_mean": _finite_or_none(s.insertion_auc_mean),
                               "seconds": round(s.seconds_total, 3),
                               **_trust_figures(s)}
                    for s in summaries},
    }


def _trust_figures(summary: Any) -> dict[str, float | None]:
    """The map convergence (IG, IG2) and IG2's path diagnostic, where the method has them."""
    figures = {"convergence_median": summary.convergence_median,
               "convergence_max": summary.convergence_max,
               "path_reach_median": summary.path_reach_median,
               "short_path_share": summary.short_path_share}
    return {k: _finite_or_none(v) for k, v in figures.items() if math.isfinite(v)}
