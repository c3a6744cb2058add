"""attribution_core.evaluation.uploads: image zips, text CSVs and row CSVs -> raw case items."""

from __future__ import annotations

import io
import struct
import zipfile

import numpy as np
import pytest
from PIL import Image

from attribution_core.evaluation.types import EvaluationInputError
from attribution_core.evaluation.uploads import (
    bounded_read,
    parse_expected_features,
    parse_expected_words,
    read_image_zip,
    read_rows_csv,
    read_text_csv,
)

FEATURES = ("age", "bmi", "blood_pressure")


def _png(width: int, height: int, colour: int | tuple[int, int, int] = (200, 30, 30)) -> bytes:
    mode = "L" if isinstance(colour, int) else "RGB"
    buffer = io.BytesIO()
    Image.new(mode, (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _mask_png(width: int, height: int, box: tuple[int, int, int, int]) -> bytes:
    """A black mask with a white rectangle (left, top, right, bottom exclusive)."""
    pixels = np.zeros((height, width), dtype=np.uint8)
    left, top, right, bottom = box
    pixels[top:bottom, left:right] = 255
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


# -- image zips ---------------------------------------------------------------------------------

def test_a_good_zip_gives_images_with_their_masks_and_labels() -> None:
    data = _zip({
        "cases/cat.png": _png(20, 10),
        "cases/cat_mask.png": _mask_png(20, 10, (2, 3, 7, 5)),  # 5 x 2 = 10 pixels
        "cases/dog.png": _png(16, 16),
        "cases/masks/dog.png": _mask_png(16, 16, (0, 0, 4, 4)),  # 16 pixels
        "cases/bird.jpg": _png(8, 8),  # PNG bytes behind a .jpg name: decoded by content
        "cases/labels.csv": b"file,label\ncat.png,3\ndog.png,5\nbird.jpg,1\n",
        "__MACOSX/cases/._cat.png": b"junk",
        "cases/.DS_Store": b"junk",
    })
    upload = read_image_zip(data)
    names = [item.name for item in upload.items]
    assert names == ["bird.jpg", "cat.png", "dog.png"], f"three cases, sorted, no folders: {names}"
    by_name = {item.name: item for item in upload.items}
    cat, dog, bird = by_name["cat.png"], by_name["dog.png"], by_name["bird.jpg"]
    assert cat.mask is not None and cat.mask.dtype == bool, "the _mask convention is found"
    assert cat.mask.shape == (10, 20), f"mask is [H, W] of the image: {cat.mask.shape}"
    assert int(cat.mask.sum()) == 10, f"the 5x2 drawn box is the mask: {int(cat.mask.sum())}"
    assert bool(cat.mask[3:5, 2:7].all()), "the mask sits where it was drawn"
    assert dog.mask is not None and int(dog.mask.sum()) == 16, "the masks/ convention is found"
    assert bird.mask is None, "no mask was given for the bird"
    assert (cat.label, dog.label, bird.label) == (3, 5, 1), "labels come from labels.csv"
    assert upload.skipped == (), f"macOS metadata and hidden files are silent: {upload.skipped}"
    assert cat.image.size == (20, 10), "the decoded picture is kept at its own size"


def test_non_images_are_skipped_with_a_reason_and_images_still_read() -> None:
    data = _zip({"a.png": _png(8, 8), "notes.txt": b"hello", "broken.png": b"not a png at all"})
    upload = read_image_zip(data)
    assert [i.name for i in upload.items] == ["a.png"], "the good image is read"
    notes = " | ".join(upload.skipped)
    assert "notes.txt: not an image" in notes and "PNG, JPEG" in notes, \
        f"a non-image is named with the accepted formats: {notes}"
    assert "broken.png:" in notes and "not an image we can read" in notes, \
        f"the decoder's own reason is passed on: {notes}"


def test_a_zip_of_text_files_says_that_it_holds_no_images() -> None:
    data = _zip({"a.txt": b"1", "b.txt": b"2", "c.md": b"3"})
    with pytest.raises(EvaluationInputError, match="no images") as caught:
        read_image_zip(data)
    message = str(caught.value)
    assert "3 file(s) were skipped" in message and "a.txt" in message and "c.md" in message, \
        f"the message says what was found instead: {message}"


def test_bytes_that_are_not_a_zip_are_refused() -> None:
    with pytest.raises(EvaluationInputError, match=r"not a zip archive.*compress it to \.zip"):
        read_image_zip(_png(8, 8))
    with pytest.raises(EvaluationInputError, match="empty"):
        read_image_zip(b"")


def test_a_zip_bomb_is_refused_by_its_compression_ratio() -> None:
    # 5 MiB of zeros deflates roughly a thousandfold: far beyond the 200x limit.
    data = _zip({"bomb.png": bytes(5 * 2**20)})
    assert len(data) < 100_000, f"the test zip really is small: {len(data)} bytes"
    with pytest.raises(EvaluationInputError, match=r"bomb\.png is compressed .* zip bomb"):
        read_image_zip(data)


def test_a_zip_that_unpacks_too_large_is_refused_by_total_and_member_size() -> None:
    data = _zip({"a.png": bytes(3 * 2**20), "b.png": bytes(3 * 2**20)}, zipfile.ZIP_STORED)
    with pytest.raises(EvaluationInputError, match=r"unpacks to 6\.0 MB; at most 5 MB"):
        read_image_zip(data, max_total_bytes=5 * 2**20)
    with pytest.raises(EvaluationInputError, match=r"a\.png unpacks to 3\.0 MB; at most 2 MB"):
        read_image_zip(data, max_member_bytes=2 * 2**20)


def test_a_header_that_understates_the_size_does_not_let_the_member_through() -> None:
    real = _zip({"liar.png": bytes(2 * 2**20), "good.png": _png(8, 8)})
    patched = bytearray(real)
    # Claim 1,000 bytes in both the local header and the central directory entry of liar.png.
    local = patched.find(b"PK\x03\x04")
    central = patched.find(b"PK\x01\x02")
    assert patched[central + 46:central + 54] == b"liar.png", "patching the right entry"
    struct.pack_into("<I", patched, local + 22, 1000)
    struct.pack_into("<I", patched, central + 24, 1000)
    upload = read_image_zip(bytes(patched), max_member_bytes=4096)
    assert [i.name for i in upload.items] == ["good.png"], "the honest member is still read"
    assert any(s.startswith("liar.png:") and "damaged" in s for s in upload.skipped), \
        f"the lying member is refused, not read to its real size: {upload.skipped}"


def test_the_bounded_read_stops_one_byte_past_the_limit() -> None:
    stream = io.BytesIO(bytes(1000))
    with pytest.raises(EvaluationInputError, match=r"x\.png inflates to more than"):
        bounded_read(stream, 100, "x.png")
    assert stream.tell() == 101, f"only limit + 1 bytes were read: {stream.tell()}"
    assert bounded_read(io.BytesIO(b"abc"), 3, "y") == b"abc", "a member at the limit is read"


def test_too_many_members_names_the_limit() -> None:
    data = _zip({f"img{i}.png": _png(8, 8) for i in range(6)})
    with pytest.raises(EvaluationInputError, match=r"6 files; at most 5 .*2 images"):
        read_image_zip(data, max_cases=2)
    with pytest.raises(EvaluationInputError, match=r"6 images; at most 5"):
        read_image_zip(data, max_cases=5)


def test_a_mask_of_the_wrong_size_is_noted_and_the_image_kept_without_it() -> None:
    data = _zip({"cat.png": _png(20, 10), "cat_mask.png": _mask_png(10, 10, (0, 0, 5, 5)),
                 "owl_mask.png": _mask_png(8, 8, (0, 0, 2, 2))})
    upload = read_image_zip(data)
    assert [i.name for i in upload.items] == ["cat.png"], "the image is kept"
    assert upload.items[0].mask is None, "the mismatched mask is not used"
    notes = " | ".join(upload.skipped)
    assert "cat_mask.png" in notes and "10x10" in notes and "20x10" in notes \
        and "kept without a mask" in notes, f"both sizes are given: {notes}"
    assert "owl_mask.png" in notes and "no image named 'owl'" in notes, \
        f"a mask without its image is noted: {notes}"


def test_duplicate_file_names_get_a_folder_prefix_and_labels_file_problems_are_noted() -> None:
    data = _zip({"a/x.png": _png(8, 8), "b/x.png": _png(8, 8), "b/masks/x.png":
                 _mask_png(8, 8, (0, 0, 3, 1)), "labels.csv": b"file,label\na/x.png,2\nzz.png,1\n"})
    upload = read_image_zip(data)
    by_name = {item.name: item for item in upload.items}
    assert sorted(by_name) == ["a/x.png", "b/x.png"], f"names stay unique: {sorted(by_name)}"
    assert by_name["a/x.png"].mask is None and by_name["b/x.png"].mask is not None, \
        "the mask goes to the image in the folder above masks/"
    assert int(by_name["b/x.png"].mask.sum()) == 3, "the 3x1 box drawn"
    assert by_name["a/x.png"].label == 2 and by_name["b/x.png"].label is None, "labels by path"
    assert any("zz.png" in s and "not an image in the zip" in s for s in upload.skipped), \
        f"an unknown file in labels.csv is noted: {upload.skipped}"


def test_a_mask_is_thresholded_above_127_grey() -> None:
    pixels = np.zeros((4, 8), dtype=np.uint8)
    pixels[:, 0:2], pixels[:, 2:5], pixels[:, 5:8] = 127, 128, 255  # 8, 12 and 12 pixels
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").convert("RGB").save(buffer, format="PNG")
    upload = read_image_zip(_zip({"x.png": _png(8, 4), "x_mask.png": buffer.getvalue()}))
    mask = upload.items[0].mask
    assert mask is not None and int(mask.sum()) == 24, "128 and 255 count, 127 does not"
    assert not bool(mask[:, :2].any()), "the 127 columns stay False"


def test_labels_file_without_its_columns_is_refused_with_what_it_has() -> None:
    data = _zip({"a.png": _png(8, 8), "labels.csv": b"image,class\na.png,1\n"})
    with pytest.raises(EvaluationInputError, match=r"labels\.csv needs the columns file,label; "
                       r"found 'image', 'class'"):
        read_image_zip(data)


def test_decoded_pixels_have_a_budget() -> None:
    data = _zip({"a.png": _png(10, 10), "b.png": _png(10, 10)})
    assert len(read_image_zip(data, max_total_pixels=200).items) == 2, "200 pixels fit exactly"
    with pytest.raises(EvaluationInputError, match="megapixels together; downscale"):
        read_image_zip(data, max_total_pixels=150)


# -- text CSVs ---------------------------------------------------------------------------------

def test_text_csv_reads_expected_words_and_labels() -> None:
    data = (b'text,expected,label\n"Great food, awful service",great; awful|service,1\n'
            b"Plain sentence,,0\n")
    upload = read_text_csv(data)
    first, second = upload.items
    assert first.text == "Great food, awful service", "quoted commas stay in the text"
    assert first.expected_words == ("great", "awful", "service"), \
        f"words split on ; and |: {first.expected_words}"
    assert (first.label, second.label) == (1, 0), "integer labels"
    assert second.expected_words == (), "an empty expected cell means none"
    assert (first.name, second.name) == ("row 2", "row 3"), "named by spreadsheet row"
    assert upload.skipped == (), f"nothing skipped: {upload.skipped}"


def test_empty_texts_are_skipped_with_their_spreadsheet_row() -> None:
    data = b"text,label\nfine,1\n   ,0\n,1\nalso fine,x\nlast,2\n"
    upload = read_text_csv(data)
    assert [i.text for i in upload.items] == ["fine", "last"], "only usable rows become cases"
    assert any(s.startswith("row 3:") and "empty" in s for s in upload.skipped), \
        f"whitespace-only text on spreadsheet row 3: {upload.skipped}"
    assert any(s.startswith("row 4:") and "empty" in s for s in upload.skipped), \
        f"empty text on spreadsheet row 4: {upload.skipped}"
    assert any(s.startswith("row 5:") and "'x' is not a whole number" in s
               for s in upload.skipped), f"a bad label is noted: {upload.skipped}"


def test_a_single_column_of_any_name_is_the_text() -> None:
    upload = read_text_csv(b"review\nnice\nbad\n")
    assert [i.text for i in upload.items] == ["nice", "bad"], "the only column is the text"


def test_text_csv_without_a_text_column_lists_the_columns_found() -> None:
    with pytest.raises(EvaluationInputError, match=r"needs a 'text' column") as caught:
        read_text_csv(b"review,stars\nnice,5\n")
    assert "'review', 'stars'" in str(caught.value), f"columns listed: {caught.value}"


def test_text_csv_over_the_case_limit_is_refused() -> None:
    with pytest.raises(EvaluationInputError, match=r"3 rows; at most 2 cases"):
        read_text_csv(b"text\na\nb\nc\n", max_cases=2)


@pytest.mark.parametrize("data, words", [
    (b"", "empty"), (b"text\n\n", "no data rows"), (b"text\n\xff\xfe bad\n", "not UTF-8"),
    (b"text,label,text\na,1,b\n", "repeats the column(s) 'text'"),
])
def test_unusable_text_csvs_say_why(data: bytes, words: str) -> None:
    with pytest.raises(EvaluationInputError) as caught:
        read_text_csv(data)
    assert words in str(caught.value), f"{words!r} in {caught.value}"


def test_an_unquoted_comma_skips_the_row_with_a_hint() -> None:
    upload = read_text_csv(b"text,label\nfine,1\nsweet, sour,0\n")
    assert [i.text for i in upload.items] == ["fine"], "the split row is not guessed at"
    assert upload.skipped and upload.skipped[0].startswith("row 3:") \
        and "double quotes" in upload.skipped[0], f"the fix is named: {upload.skipped}"


# -- row CSVs ----------------------------------------------------------------------------------

def test_rows_csv_good_path_with_expected_features_names_and_labels() -> None:
    data = (b"name,blood_pressure,age,bmi,expected,label\n"
            b"ann,120,40,22.5,AGE;bmi,1\n"
            b",130,50,30,blood_pressure,0.5\n")
    upload = read_rows_csv(data, FEATURES)
    ann, other = upload.items
    assert dict(ann.values) == {"age": 40.0, "bmi": 22.5, "blood_pressure": 120.0}, \
        f"values by feature name: {dict(ann.values)}"
    assert ann.expected_features == ("age", "bmi"), \
        f"case-insensitive match to the model's spelling: {ann.expected_features}"
    assert (ann.name, other.name) == ("ann", "row 3"), "name column, else the spreadsheet row"
    assert ann.label == 1 and isinstance(ann.label, int) and other.label == 0.5, "labels parsed"
    assert upload.skipped == () and upload.problems == (), "a clean file has no notes"


def test_rows_csv_with_an_unknown_expected_feature_names_it_and_the_row() -> None:
    data = b"age,bmi,blood_pressure,expected\n40,22,120,age\n41,23,121,bmi;blod_pressure\n"
    with pytest.raises(EvaluationInputError) as caught:
        read_rows_csv(data, FEATURES)
    message = str(caught.value)
    assert "Row 3" in message and "'blod_pressure'" in message, f"row and name: {message}"
    assert "did you mean 'blood_pressure'" in message and "Valid names" in message, \
        f"a hint and the valid names: {message}"


def test_rows_csv_missing_and_extra_columns_are_named() -> None:
    with pytest.raises(EvaluationInputError, match=r"lacks .*'bmi'.*needs: 'age', 'bmi'"):
        read_rows_csv(b"age,blood_pressure\n1,2\n", FEATURES)
    with pytest.raises(EvaluationInputError) as caught:
        read_rows_csv(b"age,bmi,blood_pressure,Age2,weight\n1,2,3,4,5\n", FEATURES)
    message = str(caught.value)
    assert "does not know" in message and "'weight'" in message and "'Age2'" in message, \
        f"both extra columns are named: {message}"
    assert "did you mean 'age'" in message and "expected, label, name or id" in message, \
        f"a hint and the optional columns: {message}"


def test_rows_with_bad_cells_are_skipped_with_a_note_per_cell() -> None:
    data = b"age,bmi,blood_pressure\n40,22,120\n41,NaN,121\n42,,abc\n43,24,122\n"
    upload = read_rows_csv(data, FEATURES)
    assert [i.name for i in upload.items] == ["row 2", "row 5"], "clean rows are kept"
    assert len(upload.skipped) == 2 and upload.skipped[0].startswith("row 3:") \
        and "NaN" in upload.skipped[0], f"the NaN row is skipped with the reason: {upload.skipped}"
    assert any(p.startswith("row 4, column 'bmi'") and "empty" in p for p in upload.problems) \
        and any(p.startswith("row 4, column 'blood_pressure'") and "'abc' is not a number" in p
                for p in upload.problems), f"every bad cell is noted: {upload.problems}"


# -- small helpers ------------------------------------------------------------------------------

def test_parse_expected_words_splits_strips_and_drops_empties() -> None:
    assert parse_expected_words(" good ;bad|| ugly, good ,") == ("good", "bad", "ugly"), \
        "three separators, blanks dropped, repeats removed"
    assert parse_expected_words("") == (), "nothing expected"


def test_parse_expected_features_matches_case_insensitively_and_refuses_unknowns() -> None:
    assert parse_expected_features("BMI | age", FEATURES) == ("bmi", "age"), "canonical names"
    with pytest.raises(EvaluationInputError, match=r"'height'.*Valid names: 'age', 'bmi'"):
        parse_expected_features("age;height", FEATURES)
