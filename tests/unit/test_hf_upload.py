"""A Hugging Face text classifier uploaded as a zip: what loads, what is refused before anything
is written or imported, and what the upload's identity (the result cache's key) covers."""

from __future__ import annotations

import io
import json
import stat
import tempfile
import zipfile
from pathlib import Path

import pytest
import torch

from attribution_core.limits import MAX_MODEL_ZIP_ENTRIES
from attribution_core.models.hf_upload import text_upload_spec
from attribution_core.models.model_zip import extract_model_zip
from attribution_core.models.spec import ModelLoadError
from tests.model_zips import (
    REFERENCE_TEXTS,
    save_tiny_classifier,
    with_config,
    zip_folder,
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_classifier(tmp_path_factory.mktemp("hf") / "tiny")


def _zip(members: dict[str, bytes], symlinks: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if name in symlinks:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, content)
    return buffer.getvalue()


def _files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def _refused(data: bytes, *phrases: str, destination: Path | None = None) -> str:
    with tempfile.TemporaryDirectory() as name:
        target = destination or Path(name)
        with pytest.raises(ModelLoadError) as caught:
            extract_model_zip(data, target, "upload.zip")
        message = str(caught.value)
        written = sorted(p.name for p in target.iterdir())
    assert "\n" not in message, f"one line: {message!r}"
    for phrase in phrases:
        assert phrase in message, f"{phrase!r} not in {message!r}"
    assert not written, f"nothing is written for a refused zip: {written}"
    return message


def test_the_zip_of_a_folder_loads_and_classifies_like_the_folder(folder: Path) -> None:
    spec = text_upload_spec(zip_folder(folder), "tiny.zip",
                            reference_texts=list(REFERENCE_TEXTS))
    loaded = spec.loader(torch.device("cpu"))
    assert spec.source == "upload" and spec.name.startswith("upload:text:"), spec.name
    assert tuple(spec.class_names) == ("negative", "positive"), "names from id2label"
    assert loaded.weights_hash == spec.weights_sha256, "the identity is the cache key"
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    direct = AutoModelForSequenceClassification.from_pretrained(str(folder),
                                                                local_files_only=True).eval()
    batch = tokenizer("the film was really bad .", return_tensors="pt")
    encoded = loaded.preprocess("the film was really bad .")
    with torch.no_grad():
        expected = direct(**batch).logits
        got = loaded.forward(loaded.embed(encoded["input_ids"]),
                             attention_mask=encoded["attention_mask"])
    assert torch.equal(encoded["input_ids"], batch["input_ids"]), "same token ids"
    assert torch.allclose(got, expected, atol=1e-6), f"same logits: {got} vs {expected}"
    assert spec.reference_pool is not None and \
        list(spec.reference_pool().extras["texts"]) == list(REFERENCE_TEXTS), "reference texts"
    long_ids = loaded.preprocess("the movie " * 200)["input_ids"]
    assert long_ids.shape[1] == 64, f"truncated to the model's 64 positions: {long_ids.shape}"


def test_identity_covers_every_file_and_not_how_it_was_zipped(folder: Path) -> None:
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        nested = extract_model_zip(zip_folder(folder, top="one"), Path(a)).sha256
        flat = extract_model_zip(zip_folder(folder, top=None), Path(b)).sha256
    assert nested == flat, "the same files zipped from the folder or inside it: one model"
    changed = {}
    for name, content in _files(folder).items():
        if name.endswith(".json"):
            value = json.loads(content)
            value["_changed"] = 1
            changed[name] = json.dumps(value).encode()
    assert changed, "the folder has JSON files"
    for name, content in changed.items():
        members = {**_files(folder), name: content}
        with tempfile.TemporaryDirectory() as c:
            other = extract_model_zip(_zip(members), Path(c)).sha256
        assert other != flat, f"a change to {name} alone is another model"
    with tempfile.TemporaryDirectory() as d:
        readme = extract_model_zip(_zip({**_files(folder), "README.md": b"# mine"}), Path(d))
    assert readme.sha256 != flat and readme.ignored == ("README.md",), \
        "an extra file is hashed too, and left in the zip"


@pytest.mark.parametrize("name, kind", [
    ("pytorch_model.bin", "pickle"), ("weights.pt", "pickle"), ("tokenizer.pkl", "pickle"),
    ("modeling_evil.py", "Python code"), ("training_args.bin", "pickle")])
def test_pickles_and_code_are_refused_by_name(folder: Path, name: str, kind: str) -> None:
    _refused(_zip({**_files(folder), name: b"\x80\x04K\x01."}), name, kind, "safetensors")


@pytest.mark.parametrize("path", ["../config.json", "tiny/../../evil.json", "/etc/evil.json",
                                  "C:/evil.json", "..\\evil.json"])
def test_paths_out_of_the_folder_are_refused(folder: Path, path: str) -> None:
    _refused(_zip({**_files(folder), path: b"{}"}), "outside the folder")


def test_symbolic_links_and_nested_folders_are_refused(folder: Path) -> None:
    _refused(_zip({**_files(folder), "vocab.txt": b"/etc/passwd"}, symlinks=("vocab.txt",)),
             "symbolic link")
    nested = {f"tiny/{n}": c for n, c in _files(folder).items()}
    _refused(_zip({**nested, "tiny/1_Pooling/config.json": b"{}"}), "folder inside",
             "1_Pooling/")


def test_entry_count_and_sizes_are_bounded(folder: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    many = {**_files(folder), **{f"note_{i}.txt": b"x" for i in range(MAX_MODEL_ZIP_ENTRIES)}}
    _refused(_zip(many), f"at most {MAX_MODEL_ZIP_ENTRIES} files")
    monkeypatch.setenv("IG_DASHBOARD_MAX_MODEL_UPLOAD_MB", "1")
    bomb = _zip({**_files(folder), "model.safetensors": b"\0" * (3 * 2**20)})
    assert len(bomb) < 2**20, "the zip itself is under the limit"
    _refused(bomb, "unpacks to 3 MB", "up to 1 MB")


def test_a_member_larger_than_its_header_says_is_caught(folder: Path) -> None:
    data = bytearray(_zip({**_files(folder), "vocab.txt": b"a\n" * 50_000}))
    archive = zipfile.ZipFile(io.BytesIO(bytes(data)))
    info = archive.getinfo("vocab.txt")
    # Lower the declared size in both headers: zipfile then trusts the smaller number.
    central = bytes(data).rfind(b"PK\x01\x02", 0, len(data))
    while central >= 0:
        name_length = int.from_bytes(data[central + 28:central + 30], "little")
        if data[central + 46:central + 46 + name_length] == b"vocab.txt":
            data[central + 24:central + 28] = (1000).to_bytes(4, "little")
            break
        central = bytes(data).rfind(b"PK\x01\x02", 0, central)
    data[info.header_offset + 22:info.header_offset + 26] = (1000).to_bytes(4, "little")
    _refused(bytes(data), "vocab.txt")


@pytest.mark.parametrize("changes, phrase", [
    ({"auto_map": {"AutoModelForSequenceClassification": "evil.Model"}}, "auto_map"),
    ({"quantization_config": {"quant_method": "bitsandbytes"}}, "quantization_config"),
    ({"model_type": "not-a-model"}, "does not define"),
])
def test_configs_that_ask_for_code_are_refused_before_loading(folder: Path, changes: dict,
                                                              phrase: str) -> None:
    with pytest.raises(ModelLoadError, match=phrase):
        text_upload_spec(with_config(folder, **changes), "custom.zip")


def test_custom_tokenizer_code_is_refused(folder: Path) -> None:
    files = _files(folder)
    config = json.loads(files["tokenizer_config.json"])
    config["auto_map"] = {"AutoTokenizer": ["evil.Tokenizer", None]}
    files["tokenizer_config.json"] = json.dumps(config).encode()
    with pytest.raises(ModelLoadError, match=r"tokenizer_config\.json is refused .*auto_map"):
        text_upload_spec(_zip(files), "custom.zip")


def test_a_bare_encoder_without_its_head_is_refused(tmp_path: Path, folder: Path) -> None:
    from transformers import BertConfig, BertModel

    encoder = tmp_path / "encoder"
    config = BertConfig.from_pretrained(str(folder))
    BertModel(config).save_pretrained(str(encoder))
    files = {**_files(encoder), **{n: c for n, c in _files(folder).items()
                                   if n.startswith("tokenizer")}}
    files["config.json"] = (folder / "config.json").read_bytes()
    with pytest.raises(ModelLoadError, match="classifier"):
        text_upload_spec(_zip(files), "encoder.zip")


def test_missing_parts_are_named(folder: Path) -> None:
    files = _files(folder)
    _refused(_zip({n: c for n, c in files.items() if n != "config.json"}), "no config.json")
    _refused(_zip({n: c for n, c in files.items() if n != "model.safetensors"}),
             "no model.safetensors")
    _refused(_zip({n: c for n, c in files.items() if n != "tokenizer.json"}), "no tokenizer")
    broken = {**files, "tokenizer.json": b'{"version": "1.0"}'}
    with pytest.raises(ModelLoadError, match="tokenizer could not be loaded"):
        text_upload_spec(_zip(broken), "broken_tokenizer.zip")
    with pytest.raises(ModelLoadError, match="reference label 7"):
        text_upload_spec(zip_folder(folder), "tiny.zip", reference_texts=["the movie ."] * 2,
                         reference_labels=[0, 7])


def test_nothing_stays_on_disk_after_loading(folder: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    spec = text_upload_spec(zip_folder(folder), "tiny.zip")
    assert not list(scratch.iterdir()), f"the private folder is gone: {list(scratch.iterdir())}"
    loaded = spec.loader(torch.device("cpu"))
    encoded = loaded.preprocess("the movie was good .")
    assert encoded["input_ids"].shape[1] == 7, "the tokenizer works without its files"


def test_a_load_failure_names_the_file_never_the_server_folder(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    with pytest.raises(ModelLoadError) as caught:
        text_upload_spec(with_config(folder, hidden_size=2 * config["hidden_size"]), "odd.zip")
    message = str(caught.value)
    assert message.startswith("odd.zip: the sequence classifier could not be loaded"), message
    assert tempfile.gettempdir() not in message, f"no server path: {message}"
