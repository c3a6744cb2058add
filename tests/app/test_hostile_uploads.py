"""Hostile uploads through the pages: each gets one clear line naming its limit, never a
traceback, and what was on the page before stays (the generators are in tests/hostile_files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from attribution_core import limits
from tests import hostile_encoded, hostile_models
from tests import hostile_files as hostile
from tests.app.conftest import DIGITS

pytestmark = pytest.mark.app
PAGES = Path(__file__).resolve().parents[2] / "pages"


def _errors(at: AppTest) -> list[str]:
    return [str(e.value) for e in at.error]


def _one_line_error(at: AppTest, *fragments: str) -> str:
    assert not at.exception, f"no traceback: {at.exception}"
    errors = _errors(at)
    assert len(errors) == 1, f"exactly one error: {errors}"
    assert "\n" not in errors[0], f"one line: {errors[0]!r}"
    for fragment in fragments:
        assert fragment in errors[0], f"{fragment!r} in {errors[0]!r}"
    return errors[0]


def _image_upload(at: AppTest, name: str, data: bytes) -> AppTest:
    at.file_uploader(key="img_upload").set_value((name, data, "application/octet-stream")).run()
    return at


def _image_page() -> AppTest:
    at = AppTest.from_file(str(PAGES / "image.py"), default_timeout=120)
    at.session_state["selected_model_image"] = DIGITS
    at.run()
    at.radio(key="img_source").set_value("Upload").run()
    assert not at.exception, f"opening the image page raised: {at.exception}"
    return at


def test_image_page_answers_each_hostile_picture_and_keeps_the_last_good_one() -> None:
    at = _image_upload(_image_page(), "good.png", hostile.tiny_png(32))
    assert not at.exception and not _errors(at), f"a good picture is fine: {_errors(at)}"
    _image_upload(at, "pages.tif", hostile.many_page_tiff(64_000))
    assert not at.exception and not _errors(at), f"pages.tif is read: {_errors(at)}"
    captions = " ".join(str(c.value) for c in at.caption)
    assert f"{limits.MAX_FRAMES_COUNTED}+ frames: the first frame is used" in captions, captions
    _image_upload(at, "sizeless.tif", hostile.sizeless_second_page_tiff())
    captions = " ".join(str(c.value) for c in at.caption)
    assert not _errors(at) and "frame 2 could not be read" in captions, captions
    _image_upload(at, "flat.png", hostile.solid_png(6324, "L"))
    _one_line_error(at, "flat.png", "6324x6324", "25 MP")
    infos = " ".join(str(i.value) for i in at.info)
    assert "Still using the last good image, sizeless.tif" in infos, infos
    memo = at.session_state["img_memo"]
    assert 0 < memo.held <= limits.SESSION_IMAGE_MEMO_BYTES, f"bounded memo: {memo.held}"


def test_the_image_memo_holds_bytes_not_entries() -> None:
    at = _image_page()
    for side in (4000, 4001, 4002, 4003, 4004, 4005):
        _image_upload(at, f"big{side}.png", hostile.solid_png(side))
        assert not at.exception and not _errors(at), f"big{side}.png: {_errors(at)}"
    memo = at.session_state["img_memo"]
    assert memo.held <= limits.SESSION_IMAGE_MEMO_BYTES, f"{memo.held} bytes held"
    assert len(memo) >= 6, "reduced pictures are small enough to keep several"


def _tabular_upload(name: str, data: bytes) -> AppTest:
    at = AppTest.from_file(str(PAGES / "tabular.py"), default_timeout=120)
    at.session_state["selected_model_tabular"] = "wine_mlp"
    at.run()
    at.radio(key="tab_input_mode").set_value("Upload CSV").run()
    at.file_uploader(key="tab_csv").set_value((name, data, "text/csv")).run()
    return at


def test_tabular_page_refuses_a_160k_column_header_in_one_line() -> None:
    at = _tabular_upload("wide.csv", hostile.duplicate_header_csv(160_000))
    _one_line_error(at, "wide.csv", "160,000 columns", f"at most {limits.MAX_CSV_COLUMNS:,}")
    at.run()  # a rerun answers from the memo, with the same message
    _one_line_error(at, "160,000 columns")


def test_tabular_page_refuses_repeated_names_naming_a_few() -> None:
    header = [f"c{i % 300}" for i in range(1_500)]
    data = (",".join(header) + "\n" + ",".join(["1"] * len(header)) + "\n").encode()
    at = _tabular_upload("repeats.csv", data)
    _one_line_error(at, "repeats the column(s) 'c0', 'c1', 'c2', 'c3', 'c4' and 295 more")


def test_tabular_page_refuses_a_header_name_past_the_csv_field_limit() -> None:
    at = _tabular_upload("long.csv", hostile.long_header_field_csv(200_000))
    _one_line_error(at, "200,000 characters", f"at most {limits.MAX_COLUMN_NAME_CHARS}")


def _evaluate_upload(name: str, data: bytes) -> AppTest:
    at = AppTest.from_file(str(PAGES / "evaluate.py"), default_timeout=300)
    at.run()
    at.radio(key="eval_modality").set_value("image").run()
    at.selectbox(key="eval_model_image").set_value(DIGITS).run()
    at.radio(key="eval_source").set_value("Upload").run()
    at.file_uploader(key="eval_upload_image").set_value((name, data, "application/zip")).run()
    return at


@pytest.mark.parametrize(("name", "build", "fragment"), [
    ("deep.zip", lambda: hostile.deep_names_zip(16, 32_000),
     f"at most {limits.MAX_ZIP_NAME_CHARS} are accepted"),
    ("many.zip", lambda: hostile.many_members_zip(200_000),
     f"at most {limits.MAX_ZIP_ENTRIES:,} files and folders"),
    ("flat.zip", lambda: hostile.big_pixels_zip(2, 6324), "25 MP"),
])
def test_evaluate_page_refuses_hostile_zips_in_one_line(name: str, build: object,
                                                        fragment: str) -> None:
    at = _evaluate_upload(name, build())  # type: ignore[operator]
    _one_line_error(at, name, fragment)
    assert at.button(key="eval_run").disabled, "nothing to run on a refused zip"


def test_text_page_refuses_500_long_zero_shot_labels_and_keeps_the_built_in_ones() -> None:
    at = AppTest.from_file(str(PAGES / "text.py"), default_timeout=120)
    at.session_state["selected_model_text"] = "minilm_topic"
    at.run()
    at.text_area(key="txt_labels_minilm_topic").set_value(hostile.long_label_set(500, 2_000))
    at.button(key="txt_labels_apply_minilm_topic").click().run()
    _one_line_error(at, "500 labels were given", f"at most {limits.MAX_ZERO_SHOT_LABELS}")
    captions = " ".join(str(c.value) for c in at.caption)
    assert "Using your label set" not in captions, "the built-in labels stay in use"


def test_an_unexpected_failure_is_one_line_with_a_reference_and_is_not_remembered(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from attribution_core.modalities import image as image_io

    decode = image_io.decode_image
    at = _image_page()
    monkeypatch.setattr(image_io, "decode_image", _out_of_memory)
    _image_upload(at, "good.png", hostile.tiny_png(32))
    _one_line_error(at, "Reading good.png", "reference", "more memory")
    monkeypatch.setattr(image_io, "decode_image", decode)
    at.run()  # the same upload again: decoded now, since the failure was not remembered
    assert not at.exception and not _errors(at), f"read on the rerun: {_errors(at)}"


def _out_of_memory(data: bytes) -> object:
    raise MemoryError


# -- model uploads (issue 24) -----------------------------------------------------------------


def _own_tabular(at: AppTest, kind: str, name: str, data: bytes,
                 config: bytes | None = None, reference: bytes | None = None) -> AppTest:
    at.radio(key="tab_model_source").set_value("Your model").run()
    at.radio(key="tab_own_kind").set_value(kind).run()
    key = "tab_own_file_True" if kind == "ONNX (.onnx)" else "tab_own_file_False"
    at.file_uploader(key=key).set_value((name, data, "application/octet-stream"))
    if config is not None:
        at.file_uploader(key="tab_own_config").set_value(("config.json", config,
                                                          "application/json"))
    if reference is not None:
        at.file_uploader(key="tab_own_csv").set_value(("reference.csv", reference, "text/csv"))
    at.run()
    at.button(key="tab_own_load").click().run()
    return at


def _tabular_page() -> AppTest:
    at = AppTest.from_file(str(PAGES / "tabular.py"), default_timeout=120)
    at.session_state["selected_model_tabular"] = "wine_mlp"
    at.run()
    assert not at.exception, f"opening the tabular page raised: {at.exception}"
    return at


def _mlp(seed: int) -> bytes:
    import torch
    from safetensors.torch import save

    torch.manual_seed(seed)
    holder = torch.nn.Module()
    holder.layers = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(),
                                        torch.nn.Linear(4, 2))
    return save(holder.state_dict())


def test_a_session_keeps_two_uploaded_models_however_many_it_loads() -> None:
    at = _tabular_page()
    for seed in range(6):
        _own_tabular(at, "safetensors MLP + JSON config", f"mlp{seed}.safetensors",
                     _mlp(seed), config=b'{"activation": "relu"}')
        assert not at.exception and not at.error, f"mlp{seed}: {[e.value for e in at.error]}"
    own = at.session_state["session_model_specs"]
    uploads = [spec for spec in own.values() if spec.source == "upload"]
    assert len(uploads) == 2, f"the two most recent stay, not six: {[s.title for s in uploads]}"
    assert [s.metadata["file"] for s in uploads] == ["mlp4.safetensors", "mlp5.safetensors"], \
        "the least recently used left first"
    captions = " ".join(str(c.value) for c in at.caption)
    assert "Unloaded Your safetensors MLP model (mlp3.safetensors)" in captions, captions


def test_tabular_page_refuses_an_onnx_that_reads_a_server_file(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    secret = b"password = 'hunter2-do-not-show'\n"
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_bytes(secret)
    monkeypatch.chdir(tmp_path)
    at = _own_tabular(_tabular_page(), "ONNX (.onnx)", "leak.onnx",
                      hostile_models.external_classes(len(secret)),
                      reference=b"a,b\n1,2\n3,4\n")
    _one_line_error(at, "leak.onnx", "external files")
    assert "session_model_specs" not in at.session_state or not at.session_state[
        "session_model_specs"], "nothing was loaded"


@pytest.mark.parametrize(("name", "build", "fragment"), [
    ("sum.onnx", hostile_models.batch_sum, "mixes the rows of a batch"),
    ("big.onnx", hostile_models.constant_of_shape, "[20000, 20000]"),
    ("labels.onnx", lambda: hostile_models.long_class_labels(3, 300), "300 characters long"),
])
def test_tabular_page_refuses_hostile_graphs_in_one_line(name: str, build: object,
                                                         fragment: str) -> None:
    at = _own_tabular(_tabular_page(), "ONNX (.onnx)", name, build())  # type: ignore[operator]
    _one_line_error(at, name, fragment)


def test_a_1e308_cell_is_a_cell_problem_not_an_infinite_row() -> None:
    at = _tabular_upload("huge.csv", hostile_models.huge_cell_csv(_wine_features()))
    assert not at.exception, f"no traceback: {at.exception}"
    shown = " ".join(str(e.value) for e in at.error) + " ".join(str(w.value) for w in at.warning)
    assert "1e308 is beyond what the model's float32 input holds" in shown, shown
    assert at.button(key="tab_explain").disabled, "nothing to explain: the only row is refused"


def _wine_features() -> list[str]:
    import torch

    from attribution_core.models import load_model

    return list(load_model("wine_mlp", torch.device("cpu")).extras["feature_names"])


def test_markup_in_feature_names_is_shown_as_text_in_the_charts() -> None:
    import csv
    import io

    buffer = io.StringIO()
    csv.writer(buffer).writerows([[*hostile_models.MARKUP_NAMES, "label"], [1, 2, 3, 0],
                                  [2, 1, 0, 1], [0, 0, 1, 0]])
    at = _own_tabular(_tabular_page(), "ONNX (.onnx)", "markup.onnx",
                      hostile_models.markup_feature_names(),
                      reference=buffer.getvalue().encode())
    assert not at.exception and not at.error, f"loads: {[e.value for e in at.error]}"
    at.button(key="tab_explain").click().run()
    assert not at.exception and not at.error, f"explained: {[e.value for e in at.error]}"
    labels = [str(value) for chart in at.get("plotly_chart")
              for trace in json.loads(chart.proto.spec)["data"]
              for axis in ("x", "y") for value in trace.get(axis) or ()
              if isinstance(value, str)]
    assert not [label for label in labels if "<a" in label], f"no live link: {labels}"
    escaped = '&lt;a href="https://example.com/x"&gt;click&lt;/a&gt;'
    assert escaped in labels, f"the waterfall shows the name as the text it is: {labels}"
    assert any(label.startswith(escaped + " = ") for label in labels), \
        f"and so do the ranked bars: {labels}"


def test_an_uploaded_graph_is_priced_from_its_trial_not_timed_in_the_page(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from attribution_core import cost

    def no_timing_here(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the uploaded model was timed in the dashboard's process")

    monkeypatch.setattr(cost, "_measure", no_timing_here)
    at = _own_tabular(_tabular_page(), "ONNX (.onnx)", "good.onnx",
                      hostile_models.linear_classifier(3, 2),
                      reference=b"x0,x1,x2,label\n1,2,3,0\n2,1,0,1\n0,0,1,0\n")
    assert not at.exception and not at.error, f"loads: {[e.value for e in at.error]}"
    price = next((str(c.value) for c in at.caption if str(c.value).startswith("A click costs")),
                 "")
    assert "gradient evaluations" in price and ", about " in price, \
        f"seconds from the trial's measured row cost, none timed here: {price!r}"


# -- uploads explained after an encoding: pipelines, embeddings, text zips ----------------------


@pytest.mark.parametrize(("name", "kind", "build", "config", "fragment"), [
    ("leak.onnx", "ONNX (.onnx)", lambda: hostile_encoded.categorical_pipeline(rest="external"),
     None, "external files"),
    ("front.onnx", "ONNX (.onnx)",
     lambda: hostile_encoded.categorical_pipeline(front="broadcast"), None,
     "computes a tensor of shape [20000, 20000]"),
    ("chain.safetensors", "safetensors MLP + JSON config",
     lambda: hostile_encoded.embedding_mlp(hidden=20_000, chained=False),
     hostile_encoded.embedding_config(), "takes 1 inputs but the layer before gives 20,000"),
])
def test_tabular_page_refuses_hostile_encoded_models_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, kind: str, build: object,
        config: bytes | None, fragment: str) -> None:
    secret = b"password = 'hunter2-do-not-show'\n"
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_bytes(secret)
    monkeypatch.chdir(tmp_path)
    at = _own_tabular(_tabular_page(), kind, name, build(), config=config,  # type: ignore
                      reference=hostile_encoded.pipeline_reference_csv())
    message = _one_line_error(at, name, fragment)
    assert "hunter2" not in message, message
    assert "session_model_specs" not in at.session_state or not at.session_state[
        "session_model_specs"], "nothing was loaded"


def test_text_page_refuses_a_zip_whose_config_declares_10000_layers() -> None:
    at = AppTest.from_file(str(PAGES / "text.py"), default_timeout=120)
    at.session_state["selected_model_text"] = "cue_transformer"
    at.run()
    at.radio(key="txt_model_source").set_value("Your model").run()
    at.file_uploader(key="txt_own_zip").set_value(("deep.zip", hostile_encoded.text_layers(),
                                                   "application/zip"))
    at.run()
    at.button(key="txt_own_load").click().run()
    _one_line_error(at, "deep.zip", "num_hidden_layers is 10,000; at most 128")
    assert "txt_own_model_name" not in at.session_state or at.session_state[
        "txt_own_model_name"] is None, "no model was loaded"
