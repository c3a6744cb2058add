"""Evaluate audits the models a session uploaded on the other pages: a safetensors MLP with its
reference rows (IG checked against the same MLP called directly), a zipped text classifier on an
uploaded CSV of cases (IG2's references drawn from those cases), and none of it is offered to
another session."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save
from streamlit.testing.v1 import AppTest

from attribution_core import integrated_gradients
from dashboard.evaluate.inputs import OWN_REFERENCE, UPLOAD, YOURS
from tests.app.conftest import open_app
from tests.app.test_evaluate_page import FAST_SETTINGS, summary
from tests.app.test_own_tabular_model import reference_csv as wine_reference_csv
from tests.app.test_own_tabular_model import wine
from tests.model_zips import REFERENCE_TEXTS, save_tiny_classifier, zip_folder

pytestmark = pytest.mark.app


def wine_mlp() -> tuple[torch.nn.Module, dict[str, object]]:
    torch.manual_seed(0)
    holder = torch.nn.Module()
    holder.layers = torch.nn.Sequential(torch.nn.Linear(13, 8), torch.nn.ReLU(),
                                        torch.nn.Linear(8, 3))
    frame, _ = wine()
    config = {"activation": "relu", "class_names": ["barolo", "grignolino", "barbera"],
              "mean": frame.mean().tolist(), "std": frame.std().tolist()}
    return holder, config


def upload_wine_mlp(at: AppTest) -> AppTest:
    """The tabular page: the MLP, its config and the reference rows, loaded."""
    holder, config = wine_mlp()
    at.switch_page("../pages/tabular.py").run()
    at.radio(key="tab_model_source").set_value("Your model").run()
    at.radio(key="tab_own_kind").set_value("safetensors MLP + JSON config").run()
    at.file_uploader(key="tab_own_file_False").set_value(
        ("wine_mlp.safetensors", save(holder.state_dict()), "application/octet-stream"))
    at.file_uploader(key="tab_own_config").set_value(
        ("config.json", json.dumps(config).encode(), "application/json"))
    at.file_uploader(key="tab_own_csv").set_value(("wine_reference.csv", wine_reference_csv(),
                                                   "text/csv"))
    at.run()
    at.button(key="tab_own_load").click().run()
    assert not at.exception and not at.error, f"the MLP loads: {[e.value for e in at.error]}"
    return at


def upload_text_model(at: AppTest, folder: Path) -> AppTest:
    """The text page: a zipped tiny BERT without reference texts, loaded."""
    at.switch_page("../pages/text.py").run()
    at.radio(key="txt_model_source").set_value("Your model").run()
    at.file_uploader(key="txt_own_zip").set_value(("tiny_classifier.zip", zip_folder(folder),
                                                  "application/zip"))
    at.run()
    at.button(key="txt_own_load").click().run()
    assert not at.exception and not at.error, f"the zip loads: {[e.value for e in at.error]}"
    return at


def open_evaluate(at: AppTest, modality: str, methods: list[str]) -> list[str]:
    """Evaluate with ``modality`` and cheap settings; the titles of the models it offers."""
    at.switch_page("../pages/evaluate.py").run()
    at.radio(key="eval_modality").set_value(modality).run()
    at.multiselect(key="eval_methods").set_value(methods).run()
    for key, value in FAST_SETTINGS.items():
        at.slider(key=key).set_value(value).run()
    assert not at.exception, f"Evaluate raised: {at.exception}"
    return [str(option) for option in at.selectbox(key=f"eval_model_{modality}").options]


def choose_own(at: AppTest, modality: str, title_part: str) -> str:
    """Choose this session's model whose title holds ``title_part``; its name."""
    specs = at.session_state["session_model_specs"]
    own = next(name for name, spec in specs.items() if title_part in spec.title)
    at.selectbox(key=f"eval_model_{modality}").set_value(own).run()
    assert not at.exception, f"choosing the own model raised: {at.exception}"
    return str(own)


def test_an_uploaded_mlp_is_audited_on_its_reference_rows() -> None:
    at = upload_wine_mlp(open_app())
    titles = open_evaluate(at, "tabular", ["IG", "IG2"])
    assert any("wine_mlp.safetensors" in t and t.endswith(YOURS) for t in titles), \
        f"the upload is offered, labelled as the user's: {titles}"
    name = choose_own(at, "tabular", "wine_mlp.safetensors")
    assert at.radio(key="eval_source_own").options == [OWN_REFERENCE, UPLOAD], \
        "its reference rows are offered as cases"
    at.number_input(key="eval_n_own_cases").set_value(6).run()
    at.button(key="eval_run").click().run()
    assert not at.exception and not at.error, f"the audit runs: {[e.value for e in at.error]}"
    table = summary(at)
    assert set(table["Method"]) == {"IG", "IG2"}, f"both methods reported: {table}"
    result = next(iter(at.session_state["eval_results"].values()))
    assert result.model_name == name and len(result.cases) == 6, \
        f"6 cases of the upload: {result.model_name}, {len(result.cases)}"

    holder, config = wine_mlp()
    frame, _ = wine()
    reference = frame.iloc[::3].to_numpy(dtype=np.float64)
    mean, std = np.asarray(config["mean"]), np.asarray(config["std"])

    def standardise(raw: np.ndarray) -> torch.Tensor:
        return torch.tensor((raw - mean) / std, dtype=torch.float32)[None]

    baseline = standardise(reference.mean(axis=0))  # the default baseline: the rows' mean
    for case in result.cases:
        index = int(case.case_id.rsplit(" ", 1)[-1])  # "held-out 12": row 12 of the CSV
        x = standardise(reference[index])
        target = int(holder.layers(x).argmax())
        assert case.target == target, f"{case.case_id}: the predicted class is explained"
        expected = integrated_gradients(holder.layers, x, baselines=baseline, target=target,
                                        n_steps=8).attributions[0].double().numpy()
        got = np.asarray(case.outcome("IG").scores, dtype=np.float64)
        assert np.abs(got - expected).max() <= 1e-4 * max(np.abs(expected).max(), 1.0), \
            f"{case.case_id}: audited IG {got} vs the same MLP called directly {expected}"


def test_an_uploaded_text_model_is_audited_on_uploaded_cases(tmp_path: Path) -> None:
    folder = save_tiny_classifier(tmp_path / "tiny", trained=True)  # predicts both classes
    at = upload_text_model(open_app(), folder)
    titles = open_evaluate(at, "text", ["IG", "IG2"])
    assert any("tiny_classifier.zip" in t and t.endswith(YOURS) for t in titles), titles
    choose_own(at, "text", "tiny_classifier.zip")
    assert at.radio(key="eval_source_own").options == [UPLOAD], \
        "without reference texts the cases come from an upload"
    cases = "text,expected\n" + "\n".join(f"{t},{t.split()[-2]}" for t in REFERENCE_TEXTS)
    at.file_uploader(key="eval_upload_text").set_value(("cases.csv", cases.encode(),
                                                       "text/csv")).run()
    assert not at.exception and not at.error, f"cases built: {[e.value for e in at.error]}"
    at.button(key="eval_run").click().run()
    assert not at.exception and not at.error, f"the audit runs: {[e.value for e in at.error]}"
    result = next(iter(at.session_state["eval_results"].values()))
    assert len(result.cases) == len(REFERENCE_TEXTS), \
        f"every uploaded text is a case: {len(result.cases)}"
    predicted = {case.target for case in result.cases}
    assert predicted == {0, 1}, f"the model predicts both classes on the cases: {predicted}"

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from attribution_core.evaluation.uploads_csv import read_text_csv
    from attribution_core.models.wrappers import HFTextClassifier

    texts = {item.name: item.text for item in read_text_csv(cases.encode()).items}
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = HFTextClassifier(AutoModelForSequenceClassification.from_pretrained(
        str(folder), local_files_only=True).eval())
    for case in result.cases:
        batch = tokenizer(texts[case.case_id], return_tensors="pt")
        ids, mask = batch["input_ids"], batch["attention_mask"]
        special = torch.tensor([i in tokenizer.all_special_ids for i in ids[0].tolist()])
        pad = torch.where(special, ids, torch.full_like(ids, tokenizer.pad_token_id))
        with torch.no_grad():
            inputs, baseline = model.embed(ids), model.embed(pad)
        expected = integrated_gradients(model, inputs, baselines=baseline, target=case.target,
                                        n_steps=8, forward_kwargs={"attention_mask": mask})
        per_token = expected.attributions[0].sum(-1).double().numpy()
        ig = case.outcome("IG")
        got = np.asarray(ig.scores, dtype=np.float64)
        assert np.abs(got - per_token).max() <= 1e-4 * max(np.abs(per_token).max(), 1e-3), \
            f"{case.case_id}: audited IG {got} vs the same model called directly {per_token}"
        assert abs(ig.delta - float(expected.delta[0])) <= 1e-4 * (1 + abs(ig.delta)), \
            f"{case.case_id}: the completeness error reported is the direct one"
        ig2 = case.outcome("IG2")
        assert np.isfinite(ig2.delta) and np.asarray(ig2.scores).shape == got.shape, \
            f"{case.case_id}: IG2 walked towards other uploaded cases"


def test_a_second_session_sees_neither_upload(tmp_path: Path) -> None:
    folder = save_tiny_classifier(tmp_path / "tiny")
    first = upload_text_model(upload_wine_mlp(open_app()), folder)
    assert any("tiny_classifier.zip" in t for t in open_evaluate(first, "text", ["IG"])), \
        "A's Evaluate lists A's text model"
    second = open_app("text")
    sidebar = [str(o) for o in second.selectbox(key="sidebar_model_text").options]
    assert sidebar and not any("Your" in o for o in sidebar), f"B's text models: {sidebar}"
    second.radio(key="txt_model_source").set_value("Your model").run()
    assert "txt_own_model_name" not in second.session_state and not any(
        "Using **" in c.value for c in second.caption), "B's text page holds no model of A's"
    for modality, upload in (("text", "tiny_classifier.zip"),
                             ("tabular", "wine_mlp.safetensors")):
        titles = open_evaluate(second, modality, ["IG"])
        assert titles and not any(upload in t or YOURS in t for t in titles), \
            f"B's Evaluate offers no upload of A's ({modality}): {titles}"
