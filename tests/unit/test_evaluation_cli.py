"""``python -m attribution_core explain``: reports from bundled and uploaded cases, clean errors."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attribution_core.evaluation.cli import CommandError, main, parse_methods
from attribution_core.evaluation.report import read_report
from attribution_core.evaluation.types import ALL_METHODS
from attribution_core.models import get_spec, list_specs, load_model

ROOT = Path(__file__).resolve().parents[2]


def _summary(out: str) -> dict:
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, f"stdout must hold exactly one line of JSON, got {lines!r}"
    return json.loads(lines[0])


@pytest.mark.slow
def test_explain_bundled_writes_a_loadable_report(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["explain", "--model", "digits_cnn", "--bundled", "--n-cases", "3",
                   "--methods", "IG,Saliency", "--ig-steps", "8", "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert status == 0, f"explain must succeed: {captured.err}"
    summary = _summary(captured.out)
    result = read_report(summary["json"])
    assert len(result.cases) == 3 and summary["n_cases"] == 3, "three cases were asked for"
    assert result.settings.methods == ("IG", "Saliency") and result.settings.ig_steps == 8, \
        "the command's settings must be recorded in the report"
    assert set(summary["methods"]) == {"IG", "Saliency"}, "the summary covers the chosen methods"
    assert summary["methods"]["IG"]["deletion_auc_mean"] == pytest.approx(
        result.summaries()[0].deletion_auc_mean), "stdout and the report must agree"
    assert Path(summary["html"]).stat().st_size > 1_000_000, "the HTML embeds plotly.js"
    assert Path(summary["attributions"]).is_file(), "the maps file must be written"
    assert "3 of 3 cases done" in captured.err, "progress goes to stderr"


def test_explain_reads_a_folder_of_images_with_masks(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    samples = list(get_spec("digits_cnn").samples())[:3]  # type: ignore[misc]
    folder, masks = tmp_path / "images", tmp_path / "masks"
    folder.mkdir()
    masks.mkdir()
    for index, sample in enumerate(samples):
        sample.value.save(folder / f"digit{index}.png")
    width, height = samples[0].value.size
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[: height // 2] = 255  # the top half is "expected"
    Image.fromarray(mask).save(folder / "digit0_mask.png")  # next to its image
    Image.fromarray(mask).save(masks / "digit1.png")  # given with --expected
    status = main(["explain", "--model", "digits_cnn", "--input", str(folder), "--expected",
                   str(masks), "--methods", "Saliency", "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert status == 0, f"a folder of images must be evaluated: {captured.err}"
    result = read_report(_summary(captured.out)["json"])
    by_name = {case.case_id: case for case in result.cases}
    assert sorted(by_name) == ["digit0.png", "digit1.png", "digit2.png"], \
        f"every image becomes a case named after its file: {sorted(by_name)}"
    assert by_name["digit0.png"].expected is not None, "a <stem>_mask.png must be used"
    assert by_name["digit1.png"].expected is not None, "a mask from --expected must be used"
    assert by_name["digit2.png"].expected is None, "an image without a mask has no expectation"


def test_explain_reads_table_rows_with_an_expected_csv(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from attribution_core.evaluation.cases import feature_names, pool_raw

    loaded = load_model("wine_mlp", device="cpu")
    names = feature_names(loaded)
    raw = pool_raw(loaded, loaded.spec.reference_pool())  # type: ignore[misc]
    rows = tmp_path / "rows.csv"
    with rows.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", *names])
        writer.writerows([f"wine {i}", *raw[i].tolist()] for i in range(3))
    expected = tmp_path / "expected.csv"
    expected.write_text(f"name,expected\nwine 1,{names[0]};{names[2]}\n", encoding="utf-8")
    status = main(["explain", "--model", "wine_mlp", "--input", str(rows), "--expected",
                   str(expected), "--methods", "IG,Saliency", "--ig-steps", "8",
                   "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert status == 0, f"a CSV of rows must be evaluated: {captured.err}"
    result = read_report(_summary(captured.out)["json"])
    by_name = {case.case_id: case for case in result.cases}
    assert sorted(by_name) == ["wine 0", "wine 1", "wine 2"], "one case per row, by name"
    marked = by_name["wine 1"].expected
    assert marked is not None and np.flatnonzero(marked).tolist() == [0, 2], \
        "the expected features from --expected must mark their columns"
    assert by_name["wine 0"].expected is None, "rows not in --expected have no expectation"


def test_unknown_model_names_the_valid_ones(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["explain", "--model", "no_such_model", "--bundled"])
    err = capsys.readouterr().err
    assert status == 2, "an unknown model is an input error"
    assert "no_such_model" in err and all(s.name in err for s in list_specs()), \
        f"the message must list the valid models: {err}"
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, "one line, no trace"


def test_csv_for_an_image_model_is_refused(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    table = tmp_path / "texts.csv"
    table.write_text("text\nhello\n", encoding="utf-8")
    status = main(["explain", "--model", "digits_cnn", "--input", str(table)])
    err = capsys.readouterr().err
    assert status == 2, "a CSV cannot feed an image model"
    assert "image model" in err and "texts.csv" in err, f"the message must say why: {err}"
    assert "Traceback" not in err, "no traceback for bad input"


@pytest.mark.parametrize("content, fragment", [
    (b"not a zip", "zip"),
    (None, "does not exist"),
])
def test_unreadable_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  content: bytes | None, fragment: str) -> None:
    path = tmp_path / "cases.zip"
    if content is not None:
        path.write_bytes(content)
    status = main(["explain", "--model", "digits_cnn", "--input", str(path)])
    err = capsys.readouterr().err
    assert status == 2, f"unreadable input must exit 2: {err}"
    assert fragment in err.lower() and err.startswith("error:"), f"clear message: {err}"


def test_parse_methods_accepts_loose_spelling_and_names_bad_ones() -> None:
    assert parse_methods("ig, ig2,smoothgrad,gradient x input") == (
        "IG", "IG2", "SmoothGrad (IG)", "Gradient x Input"), "case and spaces must not matter"
    assert parse_methods(",".join(ALL_METHODS)) == ALL_METHODS, "canonical names map to self"
    with pytest.raises(CommandError, match="LIME"):
        parse_methods("IG,LIME")


def test_bad_method_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["explain", "--model", "digits_cnn", "--bundled", "--methods", "Occlusion"])
    err = capsys.readouterr().err
    assert status == 2 and "Occlusion" in err and "GradientSHAP" in err, \
        f"an unknown method must be named with the valid choices: {err}"


@pytest.mark.slow
def test_module_help_lists_the_subcommands() -> None:
    completed = subprocess.run([sys.executable, "-m", "attribution_core", "--help"], cwd=ROOT,
                               capture_output=True, text=True, timeout=120,
                               env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert completed.returncode == 0, f"--help must succeed: {completed.stderr}"
    assert "explain" in completed.stdout and "models" in completed.stdout, \
        f"--help must list the subcommands: {completed.stdout}"
