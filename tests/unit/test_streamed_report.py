"""A sharded run's report streamed from its shards: the same files as the in-memory report,
a Parquet case table, and a driver whose memory does not grow with the number of shards.

Shards here are synthetic results (no model), written with the same ``encode_shard`` the
workers use, so these tests are fast; the Ray tests run the real command.
"""

from __future__ import annotations

import json
import re
import tracemalloc
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.torch import load_file

from attribution_core.evaluation import case_table, report_view, streamed_report
from attribution_core.evaluation.report import read_report, write_report
from attribution_core.evaluation.shards import RunHeader, ShardStore, encode_shard, merge
from attribution_core.evaluation.tensor_file import TensorFileWriter
from attribution_core.evaluation.types import EvaluationResult
from tests.unit.test_evaluation_report import _result, assert_results_equal

_PLOTLY_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SIDE = 96
_CREATED = re.compile(r"created \(UTC\)</th><td>[^<]*")


def _shards(result: EvaluationResult, folder: Path, size: int) -> tuple[ShardStore, RunHeader,
                                                                       list[int]]:
    store = ShardStore(folder)
    store.prepare("test", {}, resume=False)
    indices = []
    for index, start in enumerate(range(0, len(result.cases), size)):
        store.write(encode_shard(index, result.cases[start:start + size], (f"note {index}",),
                                 0.5, {}))
        indices.append(index)
    header = RunHeader(result.model_name, result.model_title, result.modality,
                       result.weights_hash, result.class_names, result.settings, result.device,
                       len(result.cases) + 2)
    return store, header, indices


def _same_page(streamed: str, in_memory: str) -> bool:
    def normal(page: str) -> str:
        return _PLOTLY_ID.sub("ID", _CREATED.sub("", page))

    return normal(streamed) == normal(in_memory)


def test_streamed_report_equals_the_in_memory_report_and_adds_the_case_table(
        tmp_path: Path) -> None:
    # Mixed kinds cover pictures, tokens and rows; the repeated id "a" needs the "#<position>"
    # map key; "d" gets no disagreement (NaN) so it must not be among the hardest cases.
    result = _result(("image", "text", "tabular", "image", "text"), ids=("a", "b", "a", "c", "d"))
    last = result.cases[-1]
    result = replace(result, cases=(*result.cases[:-1], replace(last, disagreement=np.nan)))
    store, header, indices = _shards(result, tmp_path / "run", 2)
    merged = merge(store, indices, header, cancelled=True)  # what the old driver wrote
    expected = write_report(merged, tmp_path / "in_memory", extra={"command": "test"})

    report = streamed_report.write_streamed_report(store, indices, header, tmp_path / "run",
                                                   cancelled=True, extra={"command": "test"})
    assert_results_equal(read_report(report.files.json_path), merged)
    streamed_record = json.loads(report.files.json_path.read_text(encoding="utf-8"))
    memory_record = json.loads(expected.json_path.read_text(encoding="utf-8"))
    streamed_record.pop("created"), memory_record.pop("created")
    assert streamed_record == memory_record, "evaluation.json must be the in-memory record"
    maps, expected_maps = (load_file(str(report.files.attributions_path)),
                           load_file(str(expected.attributions_path)))
    assert sorted(maps) == sorted(expected_maps) and "a#2/IG" in maps, \
        f"one map per case x method, a repeated id marked: {sorted(maps)[:6]}"
    for key, tensor in expected_maps.items():
        assert tensor.dtype == maps[key].dtype and bool((tensor == maps[key]).all()), \
            f"map {key} must be stored unchanged"
    with safe_open(str(report.files.attributions_path), framework="pt") as handle, \
            safe_open(str(expected.attributions_path), framework="pt") as other:
        assert handle.metadata() == other.metadata(), "the maps' index and model are recorded"
    assert _same_page(report.files.html_path.read_text(encoding="utf-8"),
                      expected.html_path.read_text(encoding="utf-8")), \
        "the HTML page must be the in-memory page (up to plotly's ids and the time)"

    table = report.table_path
    assert table.name == "evaluation_cases.parquet" and report.n_done == 5, "five rows"
    ids = case_table.read_column(table, "case_id").tolist()
    assert ids == [c.case_id for c in merged.cases], f"rows in input order: {ids}"
    deletion = case_table.read_column(table, "IG.deletion_auc")
    assert np.array_equal(deletion, [c.outcome("IG").deletion_auc for c in merged.cases],
                          equal_nan=True), "metrics are stored per case and method"
    files = case_table.read_column(table, "maps_file")
    keys = case_table.read_column(table, "IG2.map_key")
    for row, case in enumerate(merged.cases):
        with safe_open(str(tmp_path / "run" / files[row]), framework="numpy") as handle:
            stored = handle.get_tensor(keys[row])
        assert np.array_equal(stored, case.outcome("IG2").scores), \
            f"row {row}: maps_file and map_key must locate the case's map in its shard"
    assert report.summaries == merged.summaries(), "summaries from the table are exact"


def test_too_many_maps_for_one_file_stay_in_the_shards(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    result = _result(("image", "image", "image"))
    store, header, indices = _shards(result, tmp_path / "run", 2)
    stale = tmp_path / "out" / "evaluation_attributions.safetensors"
    stale.parent.mkdir()
    stale.write_bytes(b"from an earlier run")
    monkeypatch.setattr(streamed_report, "MAX_TENSORS", 5)  # 3 cases x 3 methods = 9 maps
    report = streamed_report.write_streamed_report(store, indices, header, tmp_path / "out",
                                                   cancelled=False)
    assert not report.attributions_written and not stale.exists(), \
        "above the limit no combined maps file is written (and no stale one is left)"
    assert len(read_report(report.files.json_path).cases) == 3, "the JSON keeps every case"


def test_many_cases_draw_boxes_from_exact_quartiles(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    result = _result(("tabular",) * 7, seed=3)
    store, header, indices = _shards(result, tmp_path / "run", 3)
    monkeypatch.setattr(report_view, "MAX_POINT_CASES", 4)
    report = streamed_report.write_streamed_report(store, indices, header, tmp_path / "out",
                                                   cancelled=False)
    page = report.files.html_path.read_text(encoding="utf-8")
    assert "7 cases: the box plots show exact quartiles" in page, "the page says so"
    values = np.array([c.outcome("IG").deletion_auc for c in result.cases])
    box = report_view.BoxStats.of(values)
    assert box is not None and box.q1 == pytest.approx(np.percentile(values, 25)) and \
        box.median == pytest.approx(np.median(values)), "quartiles are numpy's, exact"
    assert f'"q1":[{box.q1!r}]'.replace(" ", "") in page.replace(" ", "") or \
        json.dumps([box.q1]) in page, "the IG deletion box is drawn from those numbers"
    assert '"boxpoints":"all"' not in page.replace(" ", ""), "no per-case points"


def _peak_bytes(shards: int, folder: Path, streamed: bool) -> int:
    # Maps of SIDE x SIDE: the cases, not the page's fixed parts, dominate what a run holds.
    base = _result(("image",) * 4, seed=1)
    cases = []
    for shard in range(shards):
        for case in base.cases:
            outcomes = tuple(replace(o, scores=np.full((SIDE, SIDE), shard, np.float32))
                             for o in case.outcomes)
            cases.append(replace(case, case_id=f"{shard}-{case.case_id}", outcomes=outcomes))
    store, header, indices = _shards(replace(base, cases=tuple(cases)), folder / "run", 4)
    del cases
    tracemalloc.start()
    try:
        if streamed:
            streamed_report.write_streamed_report(store, indices, header, folder / "out",
                                                  cancelled=False)
        else:
            write_report(merge(store, indices, header, cancelled=False), folder / "out")
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_driver_memory_does_not_grow_with_the_shards(tmp_path: Path) -> None:
    _peak_bytes(1, tmp_path / "warm", True)  # first use imports and caches plotly's parts
    small, large = (_peak_bytes(n, tmp_path / f"s{n}", True) for n in (4, 16))
    assert large / small < 1.5, \
        f"4x the shards must not need much more memory: {small / 2**20:.1f} MB vs " \
        f"{large / 2**20:.1f} MB at peak"
    # The measurement can tell: the in-memory merge (the driver before) holds the whole run.
    merged = _peak_bytes(16, tmp_path / "merged", False)
    assert merged > 2 * large, \
        f"control: the in-memory merge needs more ({merged / 2**20:.1f} MB vs " \
        f"{large / 2**20:.1f} MB streamed)"


def test_tensor_file_is_read_by_safetensors_and_checks_its_plan(tmp_path: Path) -> None:
    arrays = {"b": np.arange(6, dtype=np.float64).reshape(2, 3), "a/x": np.ones(3, np.float32),
              "flag": np.array([True, False])}
    writer = TensorFileWriter()
    for key, array in arrays.items():
        writer.plan(key, array.dtype, array.shape)
    path = tmp_path / "maps.safetensors"
    with writer.writing(path, {"note": "x"}) as write:
        for array in arrays.values():
            write(array)
    with safe_open(str(path), framework="numpy") as handle:
        assert handle.metadata() == {"note": "x"}, "metadata kept"
        for key, array in arrays.items():
            loaded = handle.get_tensor(key)
            assert loaded.dtype == array.dtype and np.array_equal(loaded, array), key
    with pytest.raises(ValueError, match="not what was planned"), \
            writer.writing(tmp_path / "bad.safetensors", {}) as write:
        write(np.zeros(5))
    with pytest.raises(ValueError, match="were not written"), \
            writer.writing(tmp_path / "short.safetensors", {}) as write:
        write(arrays["b"])


def test_a_run_stopped_before_any_shard_still_writes_a_readable_report(tmp_path: Path) -> None:
    result = _result(("image", "image"))
    store, header, _ = _shards(result, tmp_path / "run", 2)
    report = streamed_report.write_streamed_report(store, [], header, tmp_path / "run",
                                                   cancelled=True)
    empty = read_report(report.files.json_path)
    assert empty.cases == () and empty.cancelled and empty.n_requested == 4, \
        f"an empty, cancelled report: {empty.n_requested} requested"
    assert [s.method for s in report.summaries] == list(result.settings.methods), \
        "with no case every chosen method is listed, as the in-memory report does"
    page = report.files.html_path.read_text(encoding="utf-8")
    assert "Cancelled: 0 of 4 cases done." in page and 'class="figure"' not in page, \
        "the page says nothing was done and draws no figure"
    assert case_table.read_column(report.table_path, "case_id").size == 0, "an empty table"
