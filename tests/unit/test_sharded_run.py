"""Sharded evaluation without Ray: shard inputs read lazily, shard files, resume, merge, CLI errors.

The driver loop and the workers are the ones the Ray engine uses; here the shards run in this
process (``InProcessExecutor``), so these tests are fast and need no Ray.
"""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from attribution_core.evaluation import uploads
from attribution_core.evaluation.cli import main, zip_folder
from attribution_core.evaluation.runner import evaluate
from attribution_core.evaluation.shard_inputs import CaseOptions, plan_shards
from attribution_core.evaluation.sharded_run import (
    STOP_AFTER_SHARDS_ENV,
    InProcessExecutor,
    ShardWorker,
    run_shards,
)
from attribution_core.evaluation.shards import RunHeader, ShardStore, merge
from attribution_core.evaluation.types import EvaluationSettings
from attribution_core.models import get_spec, load_model

SETTINGS = EvaluationSettings(methods=("IG", "IG2", "SmoothGrad (IG)"), ig_steps=8,
                              ig2_steps=8, smoothgrad_samples=2, cases_per_batch=4)


def _header(worker: ShardWorker, n: int) -> RunHeader:
    info = worker.describe()
    return RunHeader(info["name"], info["title"], info["modality"], info["weights_hash"],
                     tuple(info["class_names"]), SETTINGS, info["device"], n)


def _assert_same(local, sharded) -> None:  # type: ignore[no-untyped-def]
    assert [c.case_id for c in local.cases] == [c.case_id for c in sharded.cases], \
        "the sharded run must hold the same cases in the same order"
    for a, b in zip(local.cases, sharded.cases, strict=True):
        assert a.random_deletion_auc == pytest.approx(b.random_deletion_auc, abs=1e-6), \
            f"{a.case_id}: the random-order reference must be seeded per case"
        for x, y in zip(a.outcomes, b.outcomes, strict=True):
            scale = float(np.abs(x.scores).max()) or 1.0
            assert np.allclose(x.scores, y.scores, atol=1e-5 * scale), \
                f"{a.case_id}/{x.method}: the map must not depend on the shard"
            assert x.deletion_auc == pytest.approx(y.deletion_auc, abs=1e-6), \
                f"{a.case_id}/{x.method}: deletion AUC differs"


def test_in_process_shards_equal_one_local_run_and_resume_skips_done_shards(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    options = CaseOptions(n_cases=9)
    worker = ShardWorker("digits_cnn", "cpu", options, SETTINGS)
    loaded = load_model("digits_cnn", device="cpu")
    from attribution_core.evaluation.cases import bundled_cases

    local = evaluate(loaded, bundled_cases(loaded, 9).cases, SETTINGS)

    store = ShardStore(tmp_path)
    assert store.prepare("fp", {}, resume=False) == set(), "a fresh run starts empty"
    monkeypatch.setenv(STOP_AFTER_SHARDS_ENV, "2")
    total, shards = plan_shards(None, "image", 9, 2)
    first = run_shards(InProcessExecutor(worker), shards, store, set(), total)
    assert first.stopped and first.computed == (0, 1), \
        f"the stop hook must stop after two shards, computed {first.computed}"
    stamps = {i: store.modified(i) for i in first.computed}

    monkeypatch.delenv(STOP_AFTER_SHARDS_ENV)
    already = store.prepare("fp", {}, resume=True)
    assert already == {0, 1}, f"resume must find the two finished shards, found {already}"
    total, shards = plan_shards(None, "image", 9, 2, skip=frozenset(already))
    second = run_shards(InProcessExecutor(worker), shards, store, already, total)
    assert second.computed == (2, 3, 4) and second.reused == (0, 1), \
        f"only the missing shards may be computed: {second}"
    assert {i: store.modified(i) for i in first.computed} == stamps, \
        "finished shards must not be written again"
    _assert_same(local, merge(store, second.indices_done, _header(worker, 9), cancelled=False))

    with pytest.raises(ValueError, match="another run"):
        store.prepare("other fingerprint", {}, resume=True)


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _items(shards, kind: str):  # type: ignore[no-untyped-def]
    items = []
    for shard in shards:
        items.extend(uploads.read_text_csv(shard.data).items)
    return items


def test_csv_and_parquet_shards_name_cases_as_the_whole_file_would(tmp_path: Path) -> None:
    rows = [["first text", ""], ["", ""], ["second", "dup"], ["third", "dup"],
            ["fourth", ""], ["fifth, with a comma", ""]]
    path = tmp_path / "texts.csv"
    _write_csv(path, ["text", "name"], rows)
    whole = uploads.read_text_csv(path.read_bytes()).items
    total, shards = plan_shards(path, "text", 100, 2)
    sharded = _items(list(shards), "texts")
    assert total == 5, f"blank rows are not cases: {total}"
    assert [(i.name, i.text) for i in sharded] == [(i.name, i.text) for i in whole], \
        "shards must name and read cases exactly as one read of the whole CSV"

    table = pa.table({"text": [r[0] or None for r in rows], "name": [r[1] for r in rows]})
    parquet = tmp_path / "texts.parquet"
    pq.write_table(table, parquet, row_group_size=2)
    total_pq, shards_pq = plan_shards(parquet, "text", 3, 2)
    from_parquet = _items(list(shards_pq), "texts")
    assert total_pq == 3 and len(from_parquet) == 3, "--n-cases bounds a Parquet input"
    assert [i.text for i in from_parquet] == ["first text", "second", "third"], \
        "Parquet rows are read in order, the empty text left out"

    _, skipped = plan_shards(path, "text", 100, 2, skip=frozenset({0}))
    first = next(iter(skipped))
    assert first.index == 0 and first.data == b"" and first.size == 2, \
        "a shard done earlier is listed without reading its rows into a CSV"


def test_image_folder_shards_keep_the_local_order_names_and_masks(tmp_path: Path) -> None:
    samples = list(get_spec("digits_cnn").samples())[:5]  # type: ignore[misc]
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    for index, sample in enumerate(samples):
        target = folder / ("sub" if index % 2 else "") / f"digit{index}.png"
        sample.value.save(target)
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[2:5, 2:5] = 255
    from PIL import Image

    Image.fromarray(mask).resize(samples[1].value.size).save(folder / "sub" / "digit1_mask.png")
    (folder / "masks").mkdir()  # the other spelling: masks/<stem>.png below the image's folder
    Image.fromarray(mask).resize(samples[2].value.size).save(folder / "masks" / "digit2.png")
    whole = uploads.read_image_zip(zip_folder(folder)).items
    total, shards = plan_shards(folder, "image", 4, 3)
    sharded = []
    for shard in shards:
        with zipfile.ZipFile(io.BytesIO(shard.data)) as archive:
            assert all(not n.startswith("/") for n in archive.namelist()), "relative members"
        sharded.extend(uploads.read_image_zip(shard.data).items)
    assert total == 4, f"--n-cases 4 must bound the listing, got {total}"
    assert [i.name for i in sharded] == [i.name for i in whole][:4], \
        "shards must follow the local engine's order (by name)"
    with_mask = {i.name: i.mask is not None for i in sharded}
    assert with_mask["digit1.png"] and with_mask["digit2.png"] and not with_mask["digit0.png"], \
        f"both mask spellings must travel with their image: {with_mask}"
    assert with_mask == {i.name: i.mask is not None for i in whole[:4]}, \
        "shards attach the masks a whole-folder read attaches"


def test_ray_only_options_need_the_ray_engine(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["explain", "--model", "digits_cnn", "--bundled", "--resume", "--workers",
                   "3", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2, "Ray options with the local engine are a command-line error"
    assert len(err) == 1 and "--workers, --resume only apply with --engine ray" in err[0], \
        f"one line naming the options: {err}"


def test_ray_engine_without_ray_installed_says_how_to_install(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    status = main(["explain", "--model", "digits_cnn", "--bundled", "--engine", "ray",
                   "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1, f"one line, exit 2: {err}"
    assert "requirements-scale.txt" in err[0], f"the message says what to install: {err}"


def test_rows_csv_with_expected_in_shards_equals_the_local_command(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from attribution_core.evaluation.cases import feature_names
    from attribution_core.evaluation.report import read_report
    from attribution_core.models.inputs import pool_raw

    loaded = load_model("wine_mlp", device="cpu")
    names = list(feature_names(loaded))
    raw = pool_raw(loaded, loaded.spec.reference_pool())  # type: ignore[misc]
    rows = tmp_path / "rows.csv"
    _write_csv(rows, names, [[str(v) for v in raw[i].tolist()] for i in range(7)])
    expected = tmp_path / "expected.csv"
    expected.write_text(f"name,expected\nrow 3,{names[0]};{names[2]}\n", encoding="utf-8")
    settings = EvaluationSettings(methods=("IG", "GradientSHAP"), ig_steps=8)
    assert main(["explain", "--model", "wine_mlp", "--input", str(rows), "--expected",
                 str(expected), "--methods", "IG,GradientSHAP", "--ig-steps", "8",
                 "--out", str(tmp_path / "local")]) == 0, "the local command must succeed"
    capsys.readouterr()
    local = read_report(tmp_path / "local" / "evaluation.json")
    assert local.settings == settings, "the command and the shards use the same settings"

    worker = ShardWorker("wine_mlp", "cpu", CaseOptions(n_cases=50), settings)
    store = ShardStore(tmp_path / "sharded")
    store.prepare("fp", {}, resume=False)
    total, shards = plan_shards(rows, "tabular", 50, 3, expected=expected)
    outcome = run_shards(InProcessExecutor(worker), shards, store, set(), total)
    info = worker.describe()
    header = RunHeader(info["name"], info["title"], info["modality"], info["weights_hash"],
                       tuple(info["class_names"]), settings, info["device"], total)
    sharded = merge(store, outcome.indices_done, header, cancelled=False)
    assert total == 7 and outcome.computed == (0, 1, 2), f"7 rows in shards of 3: {outcome}"
    marked = {c.case_id: c.expected for c in sharded.cases}
    assert marked["row 3"] is not None and np.flatnonzero(marked["row 3"]).tolist() == [0, 2], \
        "--expected must reach the row in whichever shard it lands"
    assert marked["row 2"] is None, "rows not named in --expected have no expectation"
    _assert_same(local, sharded)


def test_settings_file_replaces_the_setting_flags(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import json

    settings = EvaluationSettings(methods=("Saliency",), curve_points=5, random_orders=2,
                                  seed=7)
    record = settings.record()
    record["methods"] = list(record["methods"])
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"settings": record}), encoding="utf-8")
    assert main(["explain", "--model", "wine_mlp", "--bundled", "--n-cases", "2",
                 "--settings", str(path), "--out", str(tmp_path / "out")]) == 0, \
        "a settings file must be accepted"
    capsys.readouterr()
    from attribution_core.evaluation.report import read_report

    assert read_report(tmp_path / "out" / "evaluation.json").settings == settings, \
        "the report must record exactly the file's settings"
    path.write_text(json.dumps({"methods": ["IG"], "no_such_setting": 1}), encoding="utf-8")
    assert main(["explain", "--model", "wine_mlp", "--bundled", "--settings", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no_such_setting" in err[0], f"one line naming the key: {err}"
