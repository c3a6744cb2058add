"""Hostile model uploads (issue 24) against the loaders: each is refused with one line naming
what is wrong, before anything large is built, with this process's and the check's own peak
memory under 500 MB, and nothing of the server in the answer. The crafted files are built in
tests/hostile_models.py; ``benchmarks/hostile_uploads.py`` times them (no test asserts a time).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from attribution_core.models.onnx_models import (
    onnx_image_spec,
    parse_mlp_config,
    tabular_upload_spec,
)
from attribution_core.models.spec import ModelLoadError
from attribution_core.models.uploads import parse_class_names, torchvision_upload_spec
from tests import hostile_models as hostile

SECRET = b"password = 'hunter2-do-not-show'\n"
MEMORY_LIMIT = 500 * 2**20


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def refused(call: Callable[[], Any]) -> tuple[str, int]:
    """The one-line message ``call`` is refused with and the peak resident memory (bytes)
    above the start, here or in the check's child, whichever is larger."""
    before = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # restart VmHWM from the current RSS
    with pytest.raises(ModelLoadError) as caught:
        call()
    here = (_status_kb("VmHWM") - before) * 1024
    report = getattr(caught.value, "sandbox_report", None)
    child = report.peak_extra_bytes if report is not None else 0
    message = str(caught.value)
    assert "\n" not in message, f"one line: {message!r}"
    return message, max(here, child)


@pytest.fixture
def server_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding a secret, as the dashboard's does (.streamlit/secrets.toml)
    and a symbolic link to a folder holding it."""
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_bytes(SECRET)
    (tmp_path / "linked").symlink_to(tmp_path / ".streamlit")
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- only its own bytes ---------------------------------------------------------------------


EXTERNAL_CASES = {
    "class names in secrets.toml": lambda: hostile.external_classes(len(SECRET)),
    "a file that does not exist": lambda: hostile.external_classes(len(SECRET), "nope.bin"),
    "an offset past the end": lambda: hostile.external_classes(4, offset=10**6),
    "a length past the end": lambda: hostile.external_classes(4, length=10**6),
    "an absolute path": lambda: hostile.external_classes(8, "/etc/hostname"),
    "a path out of the folder": lambda: hostile.external_classes(8, "../../etc/hostname"),
    "a symlinked folder": lambda: hostile.external_classes(len(SECRET), "linked/secrets.toml"),
    "weights in a Constant node": lambda: hostile.external_weights(where="constant"),
    "weights in an If branch": lambda: hostile.external_weights(where="subgraph"),
    "an initializer": lambda: hostile.external_weights(where="initializer"),
    "a model-local function": hostile.external_in_function,
}


def test_external_data_is_refused_the_same_way_wherever_it_points(server_files: Path) -> None:
    messages = {}
    for case, build in EXTERNAL_CASES.items():
        data = build()
        message, peak = refused(lambda d=data: tabular_upload_spec(d, "leak.onnx"))
        assert "hunter2" not in message and "secrets" not in message, f"{case}: {message}"
        assert peak < MEMORY_LIMIT, f"{case}: {peak / 2**20:.0f} MB"
        messages[case] = message
    assert len(set(messages.values())) == 1, \
        f"one message whatever the path says (no existence or size oracle): {messages}"
    assert "external files" in next(iter(messages.values())), messages


def test_an_image_graph_with_external_weights_is_refused_alike(server_files: Path) -> None:
    message, _ = refused(lambda: onnx_image_spec(hostile.external_weights(), "leak.onnx"))
    assert "external files" in message and "secrets" not in message, message


def test_no_file_is_opened_to_refuse_external_data(server_files: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from onnx import external_data_helper

    from attribution_core.models.onnx_models import convert_onnx

    def forbidden(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("external data was read")

    monkeypatch.setattr(external_data_helper, "load_external_data_for_tensor", forbidden)
    monkeypatch.setattr(external_data_helper, "_read_external_data_bytes", forbidden,
                        raising=False)
    for case, build in EXTERNAL_CASES.items():
        with pytest.raises(ModelLoadError, match="external files"):
            convert_onnx(build())  # the server's own conversion, after the trial
        assert case  # every case went through the same refusal


# -- sizes from the header, before anything is built ----------------------------------------


MLP_CONFIG = b'{"activation": "relu"}'

SAFETENSORS_CASES = {
    "MLP of [20000, 0] weights": (hostile.mlp_zero_width, "mlp", "zero-size dimension"),
    "MLP whose layers do not chain": (hostile.mlp_unchained, "mlp",
                                      "takes 1 inputs but the layer before gives 20,000"),
    "MLP of 3,000,000 features": (hostile.mlp_wide_input, "mlp",
                                  "3,000,000 features; at most 2,000"),
    "resnet18 head [1e6, 0]": (hostile.resnet_zero_head, "resnet18", "zero-size dimension"),
    "a JSON list as header": (hostile.list_header, "mlp", "JSON list, not an object"),
    "a header nested 100,000 deep": (hostile.nested_header, "mlp", "nested far deeper"),
    "1M empty tensors": (hostile.many_empty_tensors, "mlp", "at most 4 MB are read"),
}


@pytest.mark.parametrize("case", list(SAFETENSORS_CASES))
def test_safetensors_sizes_are_checked_from_the_header(case: str) -> None:
    build, target, fragment = SAFETENSORS_CASES[case]
    data = build()
    if target == "mlp":
        config = parse_mlp_config(MLP_CONFIG)
        message, peak = refused(lambda: tabular_upload_spec(data, "mlp.safetensors",
                                                            config=config))
    else:
        message, peak = refused(lambda: torchvision_upload_spec(data, target, None,
                                                                "weights.safetensors"))
    assert fragment in message, f"{case}: {message}"
    assert peak < 64 * 2**20, f"{case}: refused from the header, {peak / 2**20:.0f} MB"


ONNX_CASES = {
    "ConstantOfShape 20000x20000": (hostile.constant_of_shape, "[20000, 20000]"),
    "Expand to 20000x20000": (hostile.expand_to_huge, "400,000,000 elements"),
    "rows of 3,000,000 values": (hostile.wide_input, "3,000,000 values; at most 2,000"),
    "500 chained 1000x1000 products": (hostile.self_matmuls, "GFLOP for a single input"),
    "an initializer that lies about its size": (hostile.lying_tensor, "carries 4 bytes"),
    "25,000 nodes": (lambda: hostile.many_nodes(25_000), "more than 20,000 nodes"),
    "30,000 class names": (lambda: hostile.many_class_labels(30_000),
                           "30,000 class names; at most 22,000"),
    "class names of 300 characters": (hostile.long_class_labels, "300 characters long"),
    "100,000 feature names": (hostile.many_feature_names, "100,000 values; at most 2,000"),
    "repeated feature names": (hostile.duplicate_feature_names, "repeats the feature name"),
    "an output that sums over the batch": (hostile.batch_sum, "mixes the rows of a batch"),
    "an output mixed with the batch mean": (lambda: hostile.batch_sum(keep_shape=True),
                                            "mixes the rows of a batch"),
    "1.6 GB whose shape comes from the input": (hostile.dynamic_allocation,
                                                "MB of memory to convert and run once"),
}


@pytest.mark.parametrize("case", list(ONNX_CASES))
def test_onnx_sizes_are_checked_before_allocation(case: str) -> None:
    build, fragment = ONNX_CASES[case]
    data = build()
    message, peak = refused(lambda: tabular_upload_spec(data, "hostile.onnx"))
    assert fragment in message, f"{case}: {message}"
    assert peak < MEMORY_LIMIT, f"{case}: {peak / 2**20:.0f} MB"


@pytest.mark.parametrize("how", ["tile", "range", "resize", "shape of x"])
def test_sizes_computed_from_constants_are_found_by_shape_inference(how: str) -> None:
    from attribution_core.models.onnx_checks import check_computed_sizes, static_shapes
    from attribution_core.models.onnx_models import parse_onnx

    model = parse_onnx(hostile.computed_huge(how))
    with pytest.raises(ModelLoadError, match=r"400,000,000 elements\) for a single input"):
        check_computed_sizes(model, static_shapes(model))


def test_an_image_graph_declaring_a_huge_input_is_refused_from_the_declaration() -> None:
    message, peak = refused(lambda: onnx_image_spec(hostile.image_input(12_000), "big.onnx"))
    assert "3x12000x12000 images; at most 4 channels and 1,024 pixels" in message, message
    assert peak < 64 * 2**20, f"refused before the 1.7 GB input: {peak / 2**20:.0f} MB"


def test_a_graph_that_only_running_shows_to_be_slow_meets_the_time_budget(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IG_DASHBOARD_MODEL_CHECK_SECONDS", "1.5")
    message, peak = refused(lambda: tabular_upload_spec(hostile.slow_dynamic(), "slow.onnx"))
    assert "took longer than 1.5 s to convert and run once" in message, message
    assert "IG_DASHBOARD_MODEL_CHECK_SECONDS" in message, "the operator's setting is named"
    assert peak < MEMORY_LIMIT, f"{peak / 2**20:.0f} MB"


def test_a_good_graph_passes_its_trial_and_carries_its_measured_price() -> None:
    spec = tabular_upload_spec(hostile.linear_classifier(3, 2), "good.onnx")
    assert tuple(spec.class_names) == ("0", "1"), spec.class_names
    measured = spec.metadata.get("row_cost")
    assert measured and measured["gradient_seconds"] > 0, f"the trial's price: {measured}"
    assert spec.metadata["row_cost_input"] == [3], spec.metadata
    assert 0 < spec.metadata["check_peak_bytes"] < MEMORY_LIMIT, spec.metadata


# -- names a model file carries ------------------------------------------------------------


def test_class_name_files_are_bounded_like_the_pages_lists() -> None:
    many = "\n".join(f"class {i}" for i in range(30_000)).encode()
    with pytest.raises(ModelLoadError, match="30,000 class names; at most 22,000"):
        parse_class_names(many, "classes.txt")
    with pytest.raises(ModelLoadError, match="control character"):
        parse_class_names(b'["ok", "bad\\u0007bell"]', "classes.json")
    repeated = parse_class_names(b"crane\nkite\ncrane\n", "imagenet.txt")
    assert repeated == ("crane", "kite", "crane"), "repeats kept: classes are picked by index"


def test_a_config_is_bounded_like_the_model_it_describes() -> None:
    with pytest.raises(ModelLoadError, match="300 characters long"):
        parse_mlp_config(f'{{"class_names": ["{"y" * 300}"]}}'.encode())
    with pytest.raises(ModelLoadError, match="repeats the feature name"):
        parse_mlp_config(b'{"feature_names": ["a", "b", "a"]}')
    with pytest.raises(ModelLoadError, match="nested far deeper"):
        parse_mlp_config(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(ModelLoadError, match="finite numbers"):
        parse_mlp_config(b'{"mean": [1, "x"]}')

