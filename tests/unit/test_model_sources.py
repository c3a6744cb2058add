"""The Hugging Face source policy: only hub-cache ids and folders under the operator's roots,
one message for every refusal, no escape through '..' or symlinks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from attribution_core.models import sources
from attribution_core.models.hf import load_hf_text_classifier
from attribution_core.models.sources import (
    MODEL_DIRS_VARIABLE,
    ModelSourceRefused,
    model_roots,
    refusal_message,
    resolve_model_source,
)
from attribution_core.models.spec import ModelLoadError
from tests.unit.test_models_loaders import _tiny_bert_folder


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An operator's model root holding one tiny saved BERT classifier, ``bert``."""
    folder = tmp_path / "models"
    _tiny_bert_folder(folder / "bert")
    return folder


def _refusal(source: str, roots: list[Path], hub_cache: Path) -> str:
    with pytest.raises(ModelSourceRefused) as caught:
        resolve_model_source(source, roots=roots, hub_cache=hub_cache)
    return str(caught.value)


def test_every_refusal_reads_exactly_alike(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    _tiny_bert_folder(outside / "model")  # a real model folder, just not shared
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text("not a key")
    cache = tmp_path / "empty-cache"
    cases = {
        "missing path": str(root / "missing"),
        "missing relative": "missing",
        "system password file": "/etc/passwd",
        "a home's .ssh (real)": os.path.expanduser("~/.ssh"),
        "a home's .ssh (tilde)": "~/.ssh",
        "an existing .ssh": str(home / ".ssh"),
        "a model folder outside the roots": str(outside / "model"),
        "dot-dot out of a root": str(root / ".." / "elsewhere" / "model"),
        "relative dot-dot": "../elsewhere/model",
        "a hub id not in the cache": "someone/not-cached-model",
        "empty": "   ",
        "a NUL byte": "bert\x00",
    }
    messages = {name: _refusal(source, [root], cache) for name, source in cases.items()}
    assert set(messages.values()) == {refusal_message()}, \
        f"one identical message whatever the reason: {messages}"
    assert "passwd" not in refusal_message() and str(tmp_path) not in refusal_message(), \
        "the message names nothing on the server"


def test_a_symlink_escaping_a_root_is_refused(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "private"
    _tiny_bert_folder(outside)
    (root / "link").symlink_to(outside, target_is_directory=True)
    assert _refusal("link", [root], tmp_path / "c") == refusal_message(), "relative link"
    assert _refusal(str(root / "link"), [root], tmp_path / "c") == refusal_message(), \
        "absolute link"


def test_a_symlink_inside_a_root_is_followed(root: Path, tmp_path: Path) -> None:
    (root / "alias").symlink_to(root / "bert", target_is_directory=True)
    resolved = resolve_model_source("alias", roots=[root], hub_cache=tmp_path / "c")
    assert resolved.load_path == os.path.realpath(root / "bert"), \
        f"the link resolves to the real folder inside the root: {resolved}"


def test_paths_outside_every_root_never_touch_the_filesystem(
        root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    touched: list[str] = []
    real_realpath, real_isdir = os.path.realpath, os.path.isdir

    def spy_realpath(path: str, *args: object, **kwargs: object) -> str:
        touched.append(str(path))
        return real_realpath(path, *args, **kwargs)  # type: ignore[arg-type]

    def spy_isdir(path: str) -> bool:
        touched.append(str(path))
        return real_isdir(path)

    monkeypatch.setattr(sources.os.path, "realpath", spy_realpath)
    monkeypatch.setattr(sources.os.path, "isdir", spy_isdir)
    for source in ("/etc/passwd", "/root/.ssh", "/etc/shadow"):
        _refusal(source, [root], tmp_path / "c")
    assert not [p for p in touched if p.startswith(("/etc", "/root"))], \
        f"refused on the text alone (no timing differences): touched {touched}"


def test_an_allowed_folder_loads_through_from_pretrained(root: Path, tmp_path: Path) -> None:
    resolved = resolve_model_source("bert", roots=[root], hub_cache=tmp_path / "c")
    assert resolved.kind == "folder" and resolved.load_path == str((root / "bert").resolve()), \
        f"a name relative to the root resolves inside it: {resolved}"
    assert resolve_model_source(str(root / "bert"), roots=[root],
                                hub_cache=tmp_path / "c").load_path == resolved.load_path, \
        "the absolute path inside the root is the same folder"
    loaded = load_hf_text_classifier(resolved.load_path, "cpu", allow_download=False,
                                     display_name=resolved.display_name)
    assert loaded.spec.class_names == ("neg", "neutral", "pos"), "the saved model is loaded"
    assert str(root) not in loaded.spec.title and str(root) not in loaded.spec.name, \
        f"the title shows what the user typed, not the server path: {loaded.spec.title}"


def test_a_broken_allowed_folder_names_what_the_user_typed(root: Path, tmp_path: Path) -> None:
    (root / "broken").mkdir()
    (root / "broken" / "config.json").write_text("{ not json")
    resolved = resolve_model_source("broken", roots=[root], hub_cache=tmp_path / "c")
    with pytest.raises(ModelLoadError) as caught:
        load_hf_text_classifier(resolved.load_path, "cpu", allow_download=False,
                                display_name=resolved.display_name)
    assert "'broken'" in str(caught.value) and str(root) not in str(caught.value), \
        f"the error names the typed source, not the server folder: {caught.value}"


def _fake_hub_cache(cache: Path, repo_id: str) -> Path:
    """The layout huggingface_hub writes: models--owner--name/{refs/main, snapshots/<rev>}."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / ("a" * 40)
    _tiny_bert_folder(snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("a" * 40)
    return snapshot


def test_hub_ids_only_from_the_local_cache(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    snapshot = _fake_hub_cache(cache, "owner/tiny-bert")
    resolved = resolve_model_source("owner/tiny-bert", roots=[], hub_cache=cache)
    assert resolved.kind == "hub cache" and Path(resolved.load_path) == snapshot, \
        f"a cached id resolves to its snapshot folder: {resolved}"
    loaded = load_hf_text_classifier(resolved.load_path, "cpu", allow_download=False,
                                     display_name=resolved.display_name)
    assert loaded.spec.title.endswith("owner/tiny-bert"), f"titled by its id: {loaded.spec.title}"
    for refused in ("owner/other", "owner/../owner/tiny-bert", "owner--tiny-bert", str(snapshot)):
        assert _refusal(refused, [], cache) == refusal_message(), f"{refused!r} is refused"


def test_roots_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv(MODEL_DIRS_VARIABLE, f"{first}{os.pathsep}{os.pathsep}{second}")
    assert model_roots() == (first.resolve(), second.resolve()), "os.pathsep-separated, blanks"
    monkeypatch.delenv(MODEL_DIRS_VARIABLE)
    assert model_roots() == (), "no roots by default"
