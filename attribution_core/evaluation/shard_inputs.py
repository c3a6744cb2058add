"""Inputs read lazily, shard by shard: bundled cases, folders or zips of images, CSV and Parquet.

The driver of a sharded run never holds the whole input. It lists what it must (file names, a
Parquet file's row count) and then yields one :class:`ShardInput` at a time: a small zip of
that shard's images (with their masks and ``labels.csv``) or a small CSV of that shard's rows.
A worker turns a shard into cases with the same validated readers and case builders as the
local engine (``uploads``, ``cases``), so a shard refuses exactly what an upload refuses.

Case names are fixed by the driver, from the whole input (``row 7`` counts rows of the whole
CSV, repeated names get `` (2)`` across shards), so a case's seed, and with it its reference
draws and noise, is the same whichever shard it lands in.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from attribution_core.evaluation.command_common import expected_by_name, mask_files
from attribution_core.evaluation.types import EvalCase, EvaluationInputError

ShardKind = Literal["bundled", "images", "texts", "rows"]
# A shard goes through the upload readers, whose per-call limits (500 cases) it must respect.
MAX_SHARD_SIZE = 500
LABELS_FILE = "labels.csv"
MAX_FILE_BYTES = 40 * 2**20  # per image or mask file, as for a member of an uploaded zip


@dataclass(frozen=True)
class ShardInput:
    """Entries ``start`` to ``stop`` (exclusive) of the input, ready to be sent to a worker.

    ``data`` is a zip of images or a UTF-8 CSV (empty for bundled cases, which every worker
    builds from the model's own pool).
    """

    index: int
    start: int
    stop: int
    kind: ShardKind
    data: bytes = b""

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class CaseOptions:
    """How raw items become cases: the same arguments the local engine gives the builders."""

    n_cases: int
    seed: int = 0
    baseline: str | None = None
    removal: str | None = None


# -- planning ----------------------------------------------------------------------------------

def plan_shards(source: Path | None, modality: str, n_cases: int, shard_size: int, *,
                expected: Path | None = None, skip: frozenset[int] = frozenset()
                ) -> tuple[int, Iterator[ShardInput]]:
    """How many entries the run covers, and a lazy iterator over its shards.

    ``source`` None means the model's bundled cases. The count is known before any shard is
    read (file listings and Parquet metadata are cheap; a CSV is counted in one streamed pass).
    Shards in ``skip`` (done by an earlier run) come without data: nothing of them is read.
    """
    if not 1 <= shard_size <= MAX_SHARD_SIZE:
        raise EvaluationInputError(f"--shard-size must be between 1 and {MAX_SHARD_SIZE}, got "
                                   f"{shard_size}.")
    if source is None:
        return n_cases, _bundled_shards(n_cases, shard_size)
    if not source.exists():
        raise EvaluationInputError(f"--input {source} does not exist.")
    suffix = source.suffix.lower()
    if modality == "image":
        if source.is_dir() or suffix == ".zip":
            return _image_shards(source, n_cases, shard_size, expected, skip)
        raise EvaluationInputError(f"An image model needs a folder or a .zip of images as "
                                   f"--input, not {source.name}.")
    kind: ShardKind = "texts" if modality == "text" else "rows"
    wanted = _expected_cells(expected) if expected is not None else {}
    if suffix == ".parquet":
        return _parquet_shards(source, kind, n_cases, shard_size, wanted, skip)
    if suffix == ".csv":
        return _csv_shards(source, kind, n_cases, shard_size, wanted, skip)
    raise EvaluationInputError(f"A {modality} model needs a .csv or .parquet file as --input, "
                               f"not {source.name}.")


def _bundled_shards(n_cases: int, shard_size: int) -> Iterator[ShardInput]:
    for index, start in enumerate(range(0, n_cases, shard_size)):
        yield ShardInput(index, start, min(start + shard_size, n_cases), "bundled")


# -- images --------------------------------------------------------------------------------------

def _visible_files(source: Path, archive: zipfile.ZipFile | None) -> list[PurePosixPath]:
    """Every file of the zip or folder, hidden ones (".x", __MACOSX) left out."""
    if archive is not None:
        paths = [PurePosixPath(info.filename) for info in archive.infolist()
                 if not info.is_dir()]
    else:
        paths = [PurePosixPath(p.relative_to(source).as_posix()) for p in source.rglob("*")
                 if p.is_file()]
    return [p for p in paths if not any(part.startswith((".", "__MACOSX")) for part in p.parts)]


def _image_shards(source: Path, n_cases: int, shard_size: int, expected: Path | None,
                  skip: frozenset[int]) -> tuple[int, Iterator[ShardInput]]:
    from attribution_core.evaluation.uploads_images import (
        _mask_home,
        _mask_stem,
        _unique_names,
        bounded_read,
    )
    from attribution_core.modalities.image import UPLOAD_EXTENSIONS

    archive = zipfile.ZipFile(source) if source.is_file() else None
    paths = _visible_files(source, archive)
    images = [p for p in paths if p.suffix.lower().lstrip(".") in UPLOAD_EXTENSIONS
              and _mask_stem(p) is None]
    # "<folder>/<stem>" -> its mask (x_mask.png beside the image, or masks/x.png below it).
    masks = {(_mask_home(p) / str(_mask_stem(p))).as_posix(): p for p in paths
             if p.suffix.lower().lstrip(".") in UPLOAD_EXTENSIONS and _mask_stem(p) is not None}
    labels = next((p for p in paths if p.name.lower() == LABELS_FILE), None)
    # The local engine orders cases by their unique name; so do shards (see module doc).
    names = _unique_names(images)
    images = sorted(images, key=lambda p: names[str(p)])[:n_cases]
    if not images:
        raise EvaluationInputError(f"--input {source} holds no images.")
    outside_masks = _mask_folder(expected) if expected is not None else {}

    def read(path: PurePosixPath) -> bytes:
        # One file at a time, each bounded like an upload's member: a zip bomb or a huge file
        # is refused after MAX_FILE_BYTES + 1 bytes, never inflated whole.
        if archive is not None:
            with archive.open(str(path)) as handle:
                return bounded_read(handle, MAX_FILE_BYTES, str(path))
        with (source / path).open("rb") as handle:
            return bounded_read(handle, MAX_FILE_BYTES, str(path))

    def shards() -> Iterator[ShardInput]:
        for index, start in enumerate(range(0, len(images), shard_size)):
            chunk = images[start:start + shard_size]
            if index in skip:
                yield ShardInput(index, start, start + len(chunk), "images")
                continue
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as shard_zip:
                for path in chunk:
                    shard_zip.writestr(str(path), read(path))
                    stem_key = (path.parent / path.stem).as_posix()
                    if stem_key in masks:
                        shard_zip.writestr(str(masks[stem_key]), read(masks[stem_key]))
                    elif path.stem in outside_masks:
                        mask = outside_masks[path.stem]
                        shard_zip.writestr(str(path.parent / f"{path.stem}_mask{mask.suffix}"),
                                           mask.read_bytes())
                if labels is not None:
                    shard_zip.writestr(str(labels), read(labels))
            yield ShardInput(index, start, start + len(chunk), "images", buffer.getvalue())

    return len(images), shards()


def _mask_folder(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise EvaluationInputError(f"--expected {folder} must be a folder of mask images for "
                                   "an image model.")
    return mask_files(folder)


# -- tables --------------------------------------------------------------------------------------

def _expected_cells(path: Path) -> dict[str, str]:
    return expected_by_name(path)


class _Names:
    """Global case names: the ``name``/``id`` cell or ``row N``; repeats get `` (2)``."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def __call__(self, given: str, number: int) -> str:
        name = given.strip() or f"row {number}"
        self._seen[name] = self._seen.get(name, 0) + 1
        return name if self._seen[name] == 1 else f"{name} ({self._seen[name]})"


def _records_to_csv(header: Sequence[str], rows: Sequence[Mapping[str, str]]) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(header), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _named_rows(records: Iterator[tuple[int, dict[str, str]]], header: Sequence[str],
                expected: Mapping[str, str]) -> tuple[list[str], Iterator[dict[str, str]]]:
    """Rows with their global name in ``name`` (and ``expected`` from --expected)."""
    lower = {h.lower(): h for h in header}
    name_column = lower.get("name") or lower.get("id")
    out_header = [h for h in header if h != name_column and h.lower() != "expected"]
    out_header += ["name", "expected"]
    expected_column = lower.get("expected")
    names = _Names()

    def rows() -> Iterator[dict[str, str]]:
        for number, row in records:
            if not any((value or "").strip() for value in row.values()):
                continue  # blank rows are dropped by the readers too (and still counted)
            name = names((row.get(name_column) or "") if name_column else "", number)
            cell = expected.get(name, row.get(expected_column, "") if expected_column else "")
            yield {**{h: row.get(h, "") or "" for h in out_header[:-2]},
                   "name": name, "expected": cell or ""}

    return out_header, rows()


def _chunks(rows: Iterator[dict[str, str]], header: Sequence[str], kind: ShardKind,
            n_cases: int, shard_size: int, skip: frozenset[int]) -> Iterator[ShardInput]:
    chunk: list[dict[str, str]] = []
    index = start = 0

    def shard() -> ShardInput:
        data = b"" if index in skip else _records_to_csv(header, chunk)
        return ShardInput(index, start, start + len(chunk), kind, data)

    for row in rows:  # rows of skipped shards are still streamed: they number the names
        if start + len(chunk) >= n_cases:
            break
        chunk.append(row)
        if len(chunk) == shard_size:
            yield shard()
            index, start, chunk = index + 1, start + len(chunk), []
    if chunk:
        yield shard()


def _text_header(header: list[str], kind: ShardKind) -> list[str]:
    """A CSV of texts may be a single unnamed column; shards add columns, so name it."""
    if kind == "texts" and len(header) == 1 and header[0].lower() != "text":
        return ["text"]
    return header


def _csv_records(path: Path, kind: ShardKind
                 ) -> tuple[list[str], Iterator[tuple[int, dict[str, str]]]]:
    handle = path.open("r", encoding="utf-8-sig", newline="")
    reader = csv.reader(handle)
    try:
        header = _text_header([h.strip() for h in next(reader, [])], kind)
    except csv.Error as error:
        handle.close()
        raise EvaluationInputError(f"{path}: the header is not readable as CSV ({error}).") \
            from error
    if not header:
        handle.close()
        raise EvaluationInputError(f"{path} is empty: it needs a header line.")

    def records() -> Iterator[tuple[int, dict[str, str]]]:
        with handle:
            number = 1
            try:
                for number, cells in enumerate(reader, start=2):  # spreadsheet: header is 1
                    yield number, dict(zip(header, cells, strict=False))
            except csv.Error as error:  # e.g. a field over the csv module's size limit
                raise EvaluationInputError(f"{path}, row {number + 1}: not readable as CSV "
                                           f"({error}).") from error

    return header, records()


def _csv_shards(path: Path, kind: ShardKind, n_cases: int, shard_size: int,
                expected: Mapping[str, str], skip: frozenset[int]
                ) -> tuple[int, Iterator[ShardInput]]:
    _, counting = _csv_records(path, kind)  # one streamed pass: the count, never the rows, is kept
    total = min(n_cases, sum(1 for _, row in counting if any((v or "").strip()
                                                             for v in row.values())))
    header, records = _csv_records(path, kind)
    out_header, rows = _named_rows(records, header, expected)
    return total, _chunks(rows, out_header, kind, total, shard_size, skip)


def _parquet_shards(path: Path, kind: ShardKind, n_cases: int, shard_size: int,
                    expected: Mapping[str, str], skip: frozenset[int]
                    ) -> tuple[int, Iterator[ShardInput]]:
    import pyarrow.parquet as pq

    try:
        table_file = pq.ParquetFile(path)
    except Exception as error:  # pyarrow raises its own error types for a broken file
        raise EvaluationInputError(f"{path} is not a readable Parquet file ({error}).") from error
    original = [str(name) for name in table_file.schema_arrow.names]
    header = _text_header(original, kind)
    total = min(n_cases, table_file.metadata.num_rows)

    def records() -> Iterator[tuple[int, dict[str, str]]]:
        number = 2  # numbered as the same table saved as CSV would be
        for batch in table_file.iter_batches(batch_size=max(shard_size, 1024)):
            for row in batch.to_pylist():
                yield number, {h: "" if row[k] is None else str(row[k])
                               for h, k in zip(header, original, strict=True)}
                number += 1

    out_header, rows = _named_rows(records(), header, expected)
    return total, _chunks(rows, out_header, kind, total, shard_size, skip)


# -- worker side ---------------------------------------------------------------------------------

def shard_cases(loaded: Any, shard: ShardInput, options: CaseOptions,
                bundled: tuple[EvalCase, ...] | None = None) -> tuple[tuple[EvalCase, ...],
                                                                       tuple[str, ...]]:
    """A shard's cases and notes, built as the local engine builds them.

    ``bundled`` is the full bundled case set when the caller already built it (an actor builds
    it once and slices it for every shard).
    """
    from attribution_core.evaluation import cases as builders
    from attribution_core.evaluation import uploads

    if shard.kind == "bundled":
        if bundled is None:
            bundled = bundled_case_set(loaded, options)
        return bundled[shard.start:shard.stop], ()
    build_options: dict[str, Any] = dict(seed=options.seed, baseline=options.baseline,
                                         removal=options.removal)
    if shard.kind == "images":
        upload = uploads.read_image_zip(shard.data, max_cases=MAX_SHARD_SIZE)
        built = builders.image_cases(loaded, upload.items, **build_options)
        return built.cases, upload.skipped + built.skipped
    if shard.kind == "texts":
        texts = uploads.read_text_csv(shard.data, max_cases=MAX_SHARD_SIZE)
        built = builders.text_cases(loaded, texts.items, **build_options)
        return built.cases, texts.skipped + built.skipped
    names = builders.feature_names(loaded)
    rows = uploads.read_rows_csv(shard.data, names, max_cases=MAX_SHARD_SIZE)
    built = builders.tabular_cases(loaded, rows.items, **build_options)
    return built.cases, rows.problems + rows.skipped + built.skipped


def bundled_case_set(loaded: Any, options: CaseOptions) -> tuple[EvalCase, ...]:
    from attribution_core.evaluation.cases import bundled_cases

    return bundled_cases(loaded, options.n_cases, seed=options.seed, baseline=options.baseline,
                         removal=options.removal).cases
