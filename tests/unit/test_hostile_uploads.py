"""Hostile uploads against the core readers: each one is answered by a one-line error naming
its limit (or read within its limits), never by an exception from deep inside a parser.

Sizes are chosen so that the old quadratic code took seconds on them (see
``benchmarks/hostile_uploads.py`` for the measured times); no test asserts a time.
"""

from __future__ import annotations

import tracemalloc
from dataclasses import replace
from pathlib import PurePosixPath

import numpy as np
import pytest
from plotly.offline import get_plotlyjs

from attribution_core import limits
from attribution_core.evaluation.report_html import report_html
from attribution_core.evaluation.types import EvaluationInputError
from attribution_core.evaluation.uploads import read_image_zip, read_text_csv
from attribution_core.evaluation.uploads_images import _unique_names
from attribution_core.evaluation.zip_directory import declared_directory
from attribution_core.modalities import image, tabular, text
from tests import hostile_files as hostile

# -- CSV ------------------------------------------------------------------------------------


def test_repeated_names_are_found_in_one_pass_and_in_first_order() -> None:
    names = ["b", "a", "c", "a", "b"] + [f"x{i}" for i in range(200_000)] + [""] * 2
    assert limits.repeated(names) == ["b", "a", ""], "each repeat once, first seen first"
    assert limits.repeated(names, ignore_empty=True) == ["b", "a"], "empty names may repeat"


def test_a_header_of_160k_copies_of_one_name_is_refused_by_its_column_count() -> None:
    data = hostile.duplicate_header_csv(160_000)
    with pytest.raises(tabular.TabularInputError, match="160,000 columns; at most 2,000"):
        tabular.parse_csv(data)
    with pytest.raises(EvaluationInputError, match="160,000 columns; at most 2,000"):
        read_text_csv(data)


def test_repeated_names_under_the_column_cap_name_a_few_of_them() -> None:
    header = [f"c{i % 600}" for i in range(limits.MAX_CSV_COLUMNS)]
    data = (",".join(header) + "\n" + ",".join(["1"] * len(header)) + "\n").encode()
    with pytest.raises(tabular.TabularInputError) as caught:
        tabular.parse_csv(data)
    message = str(caught.value)
    assert "'c0', 'c1', 'c2', 'c3', 'c4' and 595 more" in message, f"a few named: {message}"
    assert "\n" not in message, "one line"


def test_a_header_name_past_the_csv_field_limit_gets_a_message_not_a_csv_error() -> None:
    data = hostile.long_header_field_csv(200_000)
    with pytest.raises(tabular.TabularInputError, match="200,000 characters; at most 200"):
        tabular.parse_csv(data)
    with pytest.raises(EvaluationInputError, match="200,000 characters; at most 200"):
        read_text_csv(data)


def test_a_text_cell_longer_than_the_default_field_limit_is_read() -> None:
    long_text = "word " * 30_000  # 150,000 characters: over the csv module's default limit
    upload = read_text_csv(f'text\n"{long_text}"\nshort one\n'.encode())
    assert len(upload.items) == 2, f"both rows read: {upload.skipped}"
    assert upload.items[0].text == long_text, "the long cell is intact"


# -- frames ---------------------------------------------------------------------------------


def test_a_tiff_of_64k_pages_is_read_from_its_first_page_after_counting_a_few() -> None:
    decoded = image.decode_image(hostile.many_page_tiff(64_000))
    assert decoded.image.size == (8, 8), f"the first page: {decoded.image.size}"
    assert any(f"{limits.MAX_FRAMES_COUNTED}+ frames" in note for note in decoded.notes), \
        f"the note says the count stopped at the limit: {decoded.notes}"


def test_a_tiff_whose_second_page_has_no_size_uses_its_first_page() -> None:
    decoded = image.decode_image(hostile.sizeless_second_page_tiff())
    assert decoded.image.size == (8, 8), f"the first page: {decoded.image.size}"
    assert decoded.notes == ("frame 2 could not be read; the first frame is used",), \
        f"one note about the damaged page: {decoded.notes}"


def test_a_zip_with_that_tiff_keeps_every_good_image() -> None:
    data = hostile.zip_of([("bad.tif", hostile.sizeless_second_page_tiff()),
                           ("good.png", hostile.tiny_png())])
    upload = read_image_zip(data)
    assert sorted(item.name for item in upload.items) == ["bad.tif", "good.png"], \
        f"both images are cases: {upload.skipped}"


def test_an_animated_gif_is_counted_up_to_the_frame_limit() -> None:
    decoded = image.decode_image(hostile.many_frame_gif(200))
    assert any(f"{limits.MAX_FRAMES_COUNTED}+ frames" in n for n in decoded.notes), \
        f"count capped: {decoded.notes}"
    assert np.asarray(decoded.image).max() == 0, "the first frame (black) is the one used"


# -- zip directories ------------------------------------------------------------------------


def test_unique_names_add_only_the_folders_needed() -> None:
    paths = [PurePosixPath(p) for p in ("a/x.png", "b/x.png", "c/y.png", "d/e/z.png",
                                        "f/e/z.png", "z.png")]
    assert _unique_names(paths) == {"a/x.png": "a/x.png", "b/x.png": "b/x.png",
                                    "c/y.png": "y.png", "d/e/z.png": "d/e/z.png",
                                    "f/e/z.png": "f/e/z.png", "z.png": "z.png"}, \
        "as many folders as it takes, no more"


def test_unique_names_of_paths_32k_folders_deep_are_their_whole_paths() -> None:
    deep = ("d",) * 32_000
    paths = [PurePosixPath(str(i), *deep, "x.png") for i in range(16)]
    names = _unique_names(paths)
    assert all(names[str(p)] == str(p) for p in paths), "told apart only by the top folder"


def test_member_paths_thousands_of_folders_deep_are_refused_by_length() -> None:
    with pytest.raises(EvaluationInputError, match="at most 512 are accepted"):
        read_image_zip(hostile.deep_names_zip(16, 32_000))


def test_200k_members_are_refused_from_the_end_record() -> None:
    with pytest.raises(EvaluationInputError, match="65,535 entries; at most 5,000"):
        read_image_zip(hostile.many_members_zip(200_000))


def test_a_directory_that_lies_about_its_count_is_refused_by_its_size() -> None:
    data = hostile.many_members_zip(60_000, declared=3)
    assert declared_directory(data).entries == 3, "the end record claims 3 entries"
    with pytest.raises(EvaluationInputError, match=r"table of contents is .* at most 1 MB"):
        read_image_zip(data)


def test_the_end_record_of_an_ordinary_zip_is_read() -> None:
    data = hostile.zip_of([(f"{i}.png", hostile.tiny_png()) for i in range(7)])
    found = declared_directory(data)
    assert found is not None and found.entries == 7, f"seven entries declared: {found}"
    assert 0 < found.size_bytes < 1_000, f"a small directory: {found}"


# -- labels ---------------------------------------------------------------------------------


def test_label_count_and_lengths_are_bounded() -> None:
    with pytest.raises(text.TextInputError, match="500 labels were given; at most 20"):
        text.check_label_count(500)
    with pytest.raises(text.TextInputError, match="61 characters; at most 60"):
        text.check_label("x" * 61, "fine")
    with pytest.raises(text.TextInputError, match="301 characters; at most 300"):
        text.check_label("ok", "y" * 301)
    text.check_label("x" * 60, "y" * 300)  # at the limits: accepted


# -- memory ---------------------------------------------------------------------------------


def test_a_flat_40_megapixel_png_is_refused_from_its_header() -> None:
    tracemalloc.start()
    try:
        with pytest.raises(image.ImageInputError, match=r"6324x6324 pixels .* limit is 25 MP"):
            image.decode_image(hostile.solid_png(6324, "L"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 * 2**20, f"refused before decoding: {peak / 2**20:.1f} MB traced"


def test_a_16_bit_scan_is_converted_without_a_float64_copy() -> None:
    data = hostile.solid_png(3000, "I;16")
    tracemalloc.start()
    try:
        decoded = image.decode_image(data, max_side=None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert decoded.image.mode == "L" and decoded.image.size == (3000, 3000), "8-bit grey"
    assert int(np.asarray(decoded.image)[0, 0]) == round(30000 / 65535 * 255), "scaled right"
    # float64 copies of 9 MP were 72 MB each; uint8 output plus float32 blocks stay far below.
    assert peak < 24 * 2**20, f"numpy peak {peak / 2**20:.1f} MB"


def test_large_pictures_are_reduced_to_the_kept_side_on_arrival() -> None:
    decoded = image.decode_image(hostile.solid_png(4500, "RGB"))
    assert max(decoded.image.size) <= limits.MAX_KEPT_SIDE, f"reduced: {decoded.image.size}"
    assert decoded.source_size == (4500, 4500), "the original size is kept for the record"
    assert any("reduced from 4500x4500" in note for note in decoded.notes), decoded.notes


def test_an_evaluate_zip_reduces_images_and_their_masks_alike() -> None:
    mask = hostile.solid_png(4200, "L")
    data = hostile.zip_of([("a.png", hostile.solid_png(4200)), ("a_mask.png", mask)])
    upload = read_image_zip(data)
    item = upload.items[0]
    assert item.mask is not None, f"the mask still fits its image: {upload.skipped}"
    assert item.mask.shape == (item.image.height, item.image.width), "same reduced size"
    assert max(item.image.size) <= limits.MAX_KEPT_SIDE, f"reduced: {item.image.size}"


def test_the_evaluate_pixel_budget_counts_kept_pixels() -> None:
    data = hostile.big_pixels_zip(3, 4100)  # each reduced to 1367x1367 (1.9 MP)
    assert len(read_image_zip(data).items) == 3, "5.6 MP kept fit the default budget"
    with pytest.raises(EvaluationInputError, match="more than 4 megapixels"):
        read_image_zip(data, max_total_pixels=4_000_000)


def test_model_tensors_are_float32_unless_asked() -> None:
    picture = image.decode_image(hostile.tiny_png(16)).image
    prep = image.ImagePreprocessing(size=(8, 8), channels=1)
    tensor = image.to_model_tensor(picture, prep)
    assert tensor.dtype.is_floating_point and tensor.element_size() == 4, f"{tensor.dtype}"
    assert abs(float(tensor[0, 0, 0, 0]) - 90 / 255) < 1e-6, "the grey level scaled to [0, 1]"


# -- numbers, formulas and markup in what comes back (issue 24) ------------------------------


def test_a_cell_beyond_float32_is_a_cell_problem() -> None:
    data = b"a,b\n1e308,1\n-3.5e38,2\n3e38,3\n"
    checked = tabular.read_csv_rows(data, ["a", "b"])
    assert checked.row_numbers == (2,), f"only the last row fits float32: {checked.problems}"
    described = [p.describe() for p in checked.problems]
    assert described[0] == ("row 1, column 'a': 1e308 is beyond what the model's float32 "
                            "input holds (±3.4e+38)"), described
    _, problems = tabular.validate_edited_row(["1e39", "2"], ["a", "b"])
    assert len(problems) == 1 and "beyond" in problems[0].problem, problems


def test_a_model_output_that_is_not_finite_is_said_in_words() -> None:
    import torch

    from attribution_core.models.plugin_specs import build_spec
    from dashboard.tabular import logic

    layer = torch.nn.Linear(2, 2)
    torch.nn.init.constant_(layer.weight, 10.0)  # 3e38 x 10 overflows float32
    spec = build_spec("overflowing", layer, "tabular", feature_names=["a", "b"],
                      class_names=["no", "yes"])
    loaded = spec.loader(torch.device("cpu"))
    with pytest.raises(ValueError, match="output at this row is not a finite number"):
        logic.outputs_of(loaded, torch.full((1, 2), 3e38))


def test_formula_cells_are_quoted_in_csv_exports() -> None:
    import pandas as pd

    from dashboard.widgets.exports import frame_csv, spreadsheet_text

    assert [spreadsheet_text(v) for v in ("=1+2", "+A1", "-A1", "@SUM(A1)", "\tx", "\rx")] \
        == ["'=1+2", "'+A1", "'-A1", "'@SUM(A1)", "'\tx", "'\rx"], "OWASP's list, quoted"
    assert [spreadsheet_text(v) for v in ("-0.25", "1e3", "name", 3.5, -2)] == \
        ["-0.25", "1e3", "name", 3.5, -2], "numbers and plain text stay as they are"
    frame = pd.DataFrame({"feature": ['=HYPERLINK("http://x")', "age"],
                          "attribution": [-0.5, 0.25]})
    text = frame_csv(frame)
    assert text.splitlines()[1].startswith('"\'=HYPERLINK('), f"quoted formula: {text}"
    assert ",-0.5" in text and ",0.25" in text, f"numbers untouched: {text}"


def test_text_attributions_csv_quotes_formula_tokens() -> None:
    from dashboard.text.logic import MethodView
    from dashboard.text.results import attributions_csv

    unit = text.ScoredUnit(position=0, text="=cmd|'/C calc'!A0", score=1.0, special=False)
    view = MethodView(name="IG", tokens=(unit,), words=(unit,), f_input=1.0, f_reference=0.0,
                      delta=0.0, relative_delta=0.0, n_evaluations=1, from_cache=False)
    rows = attributions_csv([view]).splitlines()[1:]
    assert rows and all("'=cmd" in row for row in rows), f"the token is quoted: {rows}"


def test_the_html_report_draws_markup_in_names_as_text() -> None:
    from tests.unit.test_evaluation_report import _result

    result = _result(("tabular",))
    case = replace(result.cases[0], unit_names=('<a href="https://example.com/x">click</a>',
                                                "dose", "weight"))
    page = report_html(replace(result, cases=(case,))).replace(get_plotlyjs(), "")
    assert "\\u003ca href" not in page and "<a href" not in page, "no live link in a figure"
    assert '&lt;a href=\\"https:\\u002f\\u002fexample.com\\u002fx\\"&gt;click' in page, \
        "the name is drawn as the text it is"
