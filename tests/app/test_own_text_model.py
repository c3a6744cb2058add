"""The text page's "Your model": a zipped Hugging Face classifier (a tiny BERT built here) is
uploaded, explained exactly as the same model loaded directly, gets IG2 references from the
uploaded texts (or a clear message when there are none of another class), an out-of-domain
notice, and a refused pickle leaves the loaded model in place."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from attribution_core import integrated_gradients
from attribution_core.models import list_specs
from attribution_core.models.wrappers import HFTextClassifier
from tests.app.test_text_page import PAGE, assert_sums_hold, explain
from tests.model_zips import (
    REFERENCE_LABELS,
    REFERENCE_TEXTS,
    reference_csv,
    save_tiny_classifier,
    zip_folder,
)

pytestmark = pytest.mark.app
LABELLED = ("text,label\n" + "\n".join(f"{t},{label}" for t, label in
                                       zip(REFERENCE_TEXTS, REFERENCE_LABELS, strict=True))
            + "\n").encode()


def open_with_upload(data: bytes, references: bytes | None = None,
                     text: str = "the movie was goods .") -> AppTest:
    """The text page on its own, "Your model" chosen, ``data`` (a zip) loaded, cheap settings."""
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.session_state["selected_model_text"] = "cue_transformer"
    at.run()
    at.radio(key="txt_model_source").set_value("Your model").run()
    at.file_uploader(key="txt_own_zip").set_value(("tiny_classifier.zip", data,
                                                  "application/zip"))
    if references is not None:
        at.file_uploader(key="txt_own_refs").set_value(("references.csv", references,
                                                       "text/csv"))
    at.run()
    at.button(key="txt_own_load").click().run()
    assert not at.exception, f"loading the zip raised: {at.exception}"
    assert not at.error, f"the zip loads: {[e.value for e in at.error]}"
    at.checkbox(key="txt_curve").uncheck()
    at.slider(key="txt_steps").set_value(8)
    at.text_area(key="txt_text").set_value(text).run()
    assert not at.exception, f"setting the text raised: {at.exception}"
    return at


def current(at: AppTest) -> object:
    return at.session_state["txt_runs"][at.session_state["txt_current"]]


def test_uploaded_zip_is_explained_like_the_same_model_loaded_directly(tmp_path: Path) -> None:
    folder = save_tiny_classifier(tmp_path / "tiny")
    at = explain(open_with_upload(zip_folder(folder)), "IG")
    assert_sums_hold(at, "IG")
    classes = [str(c) for frame in at.dataframe if "class" in frame.value.columns
               for c in frame.value["class"]]
    assert set(classes) >= {"0: negative", "1: positive"}, f"names from id2label: {classes}"
    run = current(at)
    words = [u for frame in at.dataframe if "word" in frame.value.columns
             for u in frame.value["word"]]
    assert "goods" in words, f"'good' + '##s' is one ranked word: {words}"

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = HFTextClassifier(AutoModelForSequenceClassification.from_pretrained(
        str(folder), local_files_only=True).eval())
    batch = tokenizer("the movie was goods .", return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    special = torch.tensor([i in tokenizer.all_special_ids for i in ids[0].tolist()])
    baseline_ids = torch.where(special, ids, torch.full_like(ids, tokenizer.pad_token_id))
    with torch.no_grad():
        inputs, baseline = model.embed(ids), model.embed(baseline_ids)
        target = int(model(inputs, attention_mask=mask).argmax())
    expected = integrated_gradients(model, inputs, baselines=baseline, target=target, n_steps=8,
                                    forward_kwargs={"attention_mask": mask}).attributions
    got = run.ig.attributions.float()
    assert torch.equal(run.encoded.input_ids, ids), "the page tokenizes as the tokenizer does"
    assert run.settings.target == target, "the predicted class is explained by default"
    scale = float(expected.abs().max())
    assert scale > 0 and float((got - expected).abs().max()) <= 1e-5 * max(scale, 1.0), \
        f"page IG vs the same model loaded directly: max diff {(got - expected).abs().max()}"
    assert not any(s.name.startswith("upload:") for s in list_specs()), \
        "the upload never reaches the process-wide registry"


def test_ig2_walks_towards_the_uploaded_reference_texts(tmp_path: Path) -> None:
    folder = save_tiny_classifier(tmp_path / "tiny")
    at = explain(open_with_upload(zip_folder(folder), LABELLED), "both")
    assert_sums_hold(at, "IG")
    assert_sums_hold(at, "IG2")
    run = current(at)
    assert run.ig2.labels_from == "pool labels", "the uploaded labels are used"
    assert run.ig2.reference_texts and set(run.ig2.reference_texts) <= set(REFERENCE_TEXTS), \
        f"IG2's references are uploaded texts: {run.ig2.reference_texts}"
    labels = dict(zip(REFERENCE_TEXTS, REFERENCE_LABELS, strict=True))
    assert all(labels[t] != run.settings.target for t in run.ig2.reference_texts), \
        "references are of another class than the explained one"


def test_ig2_without_references_of_another_class_says_so(tmp_path: Path) -> None:
    # A head bias of 20 logits: every text, bundled sentences included, is "positive".
    folder = save_tiny_classifier(tmp_path / "tiny", head_bias=(-10.0, 10.0))
    at = explain(open_with_upload(zip_folder(folder)), "IG")
    at.radio(key="txt_method").set_value("IG2").run()
    at.slider(key="txt_ig2_refs").set_value(2)
    at.slider(key="txt_ig2_steps").set_value(4).run()
    at.button(key="txt_explain").click().run()
    assert not at.exception, f"IG2 without references raised: {at.exception}"
    messages = [e.value for e in at.error]
    assert len(messages) == 1 and "IG2 needs reference sentences of another class" in \
        messages[0] and "model predictions" in messages[0], messages
    assert current(at).ig is not None, "the IG result stays on screen"


def test_a_pickle_in_the_zip_is_refused_and_the_loaded_model_stays(tmp_path: Path) -> None:
    folder = save_tiny_classifier(tmp_path / "tiny")
    at = open_with_upload(zip_folder(folder))
    loaded_name = at.session_state["txt_own_model_name"]
    hostile = zip_folder(folder, extra={"tiny_classifier/pytorch_model.bin": b"\x80\x04K\x01."})
    at.file_uploader(key="txt_own_zip").set_value(("hostile.zip", hostile, "application/zip"))
    at.run()
    at.button(key="txt_own_load").click().run()
    assert not at.exception, f"the hostile zip raised: {at.exception}"
    messages = [e.value for e in at.error]
    assert len(messages) == 1 and "pytorch_model.bin" in messages[0] and \
        "pickle" in messages[0], messages
    assert at.session_state["txt_own_model_name"] == loaded_name, "the earlier model stays"
    assert any("Using **Your text classifier" in c.value for c in at.caption), \
        "the page still uses the earlier model"


def test_unknown_words_get_the_out_of_domain_notice(tmp_path: Path) -> None:
    folder = save_tiny_classifier(tmp_path / "tiny")
    at = open_with_upload(zip_folder(folder), reference_csv())
    assert not [w.value for w in at.warning if "unlike the data" in w.value], \
        "a text made of the reference vocabulary gets no notice"
    at.text_area(key="txt_text").set_value("zebras quietly juggled purple umbrellas .").run()
    notices = [w.value for w in at.warning if "unlike the data" in w.value]
    assert len(notices) == 1 and "[UNK]" in notices[0], \
        f"unknown words are named in words: {[w.value for w in at.warning]}"
