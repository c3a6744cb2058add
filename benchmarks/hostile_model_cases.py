"""The model-upload rows of ``benchmarks/hostile_uploads.py`` (issue 24): crafted ONNX and
safetensors files (tests/hostile_models.py), categorical ONNX pipelines, embedding MLPs and
zipped text classifiers (tests/hostile_encoded.py, read with the reference CSV or config the
page would pass), the CSV cell beyond float32, and PUTs against the server's upload manager.
Each reader is what the dashboard calls for that upload.

A case is *handled* when it ends in a one-line refusal of the expected kind (or, for the CSV,
a listed cell problem), within 8 s and 500 MB in this process and in the check's child, and
nothing of the server comes back: no secret in the answer or in the class names, no file
system wording. The external-data cases must also all get the same answer (no oracle).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests import hostile_encoded as encoded
from tests import hostile_models as hostile

SECRET = b"password = 'hunter2-do-not-show'\n"
MAX_SECONDS, MAX_MB = 8.0, 500
FILE_SYSTEM_WORDS = ("hunter2", "secrets", "No such file", "does not exist", "doesn't exist",
                     "not accessible", "Errno")
MLP_CONFIG = b'{"activation": "relu"}'

Reader = Callable[[bytes], Any]


def enter_server_folder() -> None:
    """Work in a folder that holds a secret where the dashboard's would (and a link to it)."""
    folder = Path(tempfile.mkdtemp(prefix="hostile-server-"))
    (folder / ".streamlit").mkdir()
    (folder / ".streamlit" / "secrets.toml").write_bytes(SECRET)
    (folder / "linked").symlink_to(folder / ".streamlit")
    os.chdir(folder)


def readers() -> dict[str, Reader]:
    from attribution_core.modalities import tabular
    from attribution_core.models.hf_upload import text_upload_spec
    from attribution_core.models.onnx_models import (
        onnx_image_spec,
        parse_mlp_config,
        tabular_upload_spec,
    )
    from attribution_core.models.tabular_uploads import encoded_upload_spec
    from attribution_core.models.uploads import parse_class_names, torchvision_upload_spec

    def mlp(data: bytes) -> Any:
        return tabular_upload_spec(data, "upload.safetensors", config=parse_mlp_config(MLP_CONFIG))

    def pipeline(data: bytes) -> Any:
        """What the tabular page does with an ONNX file and its reference CSV."""
        reference = tabular.parse_csv(encoded.pipeline_reference_csv())
        return encoded_upload_spec(data, "upload.onnx", reference=reference) or \
            tabular_upload_spec(data, "upload.onnx")

    def embedding(data: bytes) -> Any:
        """An embedding MLP's weights (the first byte 1: the config with long category names
        instead), with the config and reference CSV the page would read."""
        config = encoded.embedding_config(categorical={"city": ["Lyon", "Nice", "y" * 300]}) \
            if data[:1] == b"\1" else encoded.embedding_config()
        weights = encoded.embedding_mlp() if data[:1] == b"\1" else data
        reference = tabular.parse_csv(encoded.pipeline_reference_csv())
        return encoded_upload_spec(weights, "upload.safetensors",
                                   config=parse_mlp_config(config), reference=reference)

    return {
        "onnx_tabular": lambda data: tabular_upload_spec(data, "upload.onnx"),
        "onnx_image": lambda data: onnx_image_spec(data, "upload.onnx"),
        "mlp": mlp,
        "mlp_config": parse_mlp_config,
        "resnet18": lambda data: torchvision_upload_spec(data, "resnet18", None, "w.safetensors"),
        "class_names": lambda data: parse_class_names(data, "classes.txt"),
        "tabular_rows": lambda data: tabular.read_csv_rows(data, ["a", "b", "c"]),
        "puts": _puts,
        "onnx_pipeline": pipeline,
        "embedding_mlp": embedding,
        "text_zip": lambda data: text_upload_spec(data, "upload.zip"),
    }


def warm_up() -> None:
    """What a running dashboard has already done: imports, and (since issue 24) the fork
    server that checks graphs, started when the "Your model" panel opened."""
    try:
        from attribution_core.models import sandbox
    except ImportError:  # the code before the sandbox existed
        sandbox = None
    from attribution_core.models.onnx_models import tabular_upload_spec

    if sandbox is not None:
        sandbox.warm_up()
    tabular_upload_spec(hostile.linear_classifier(3, 2), "warm.onnx")


def _puts(data: bytes) -> Any:
    """Six PUTs of ``data`` (first byte: 0 = ids the session was issued, 1 = made-up ids) to a
    session whose page shows one 1 MB box, through the server's upload manager."""
    from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager
    from streamlit.runtime.uploaded_file_manager import UploadedFileRec

    manager = MemoryUploadedFileManager("/_stcore/upload_file")
    try:
        from dashboard.widgets import upload_guard
    except ImportError:
        upload_guard = None
    if upload_guard is not None:
        upload_guard.install(manager).declare_box("s", "txt_upload", 2**20, [])
    made_up = data[:1] == b"\1"
    ids = [f"made-up-{i}" for i in range(6)] if made_up else \
        [info.file_id for info in manager.get_upload_urls("s", ["f.txt"] * 6)]
    accepted = 0
    for file_id in ids:
        try:
            manager.add_file("s", UploadedFileRec(file_id, "f.txt", "text/plain", data))
            accepted += 1
        except Exception:  # starlette's HTTPException: the route answers 403 / 413
            continue
    held = sum(len(f.data) for f in manager.file_storage.get("s", {}).values())
    return {"accepted": accepted, "held_mb": round(held / 2**20)}


def _put_data(made_up: bool) -> bytes:
    return (b"\1" if made_up else b"\0") * (40 * 2**20)


EXTERNAL = "onnx: external data"
CASES: dict[str, tuple[str, Callable[[], bytes]]] = {
    f"{EXTERNAL}, class names from .streamlit/secrets.toml":
        ("onnx_tabular", lambda: hostile.external_classes(len(SECRET))),
    f"{EXTERNAL}, a file that does not exist":
        ("onnx_tabular", lambda: hostile.external_classes(len(SECRET), "nope.bin")),
    f"{EXTERNAL}, offset past the end (size oracle)":
        ("onnx_tabular", lambda: hostile.external_classes(4, offset=10**6)),
    f"{EXTERNAL}, absolute path":
        ("onnx_tabular", lambda: hostile.external_classes(8, "/etc/hostname")),
    f"{EXTERNAL}, ../ path": ("onnx_tabular", lambda: hostile.external_classes(8, "../x")),
    f"{EXTERNAL}, symlinked folder":
        ("onnx_tabular", lambda: hostile.external_classes(len(SECRET), "linked/secrets.toml")),
    f"{EXTERNAL}, weights in a Constant node":
        ("onnx_tabular", lambda: hostile.external_weights(where="constant")),
    f"{EXTERNAL}, weights in an If branch":
        ("onnx_tabular", lambda: hostile.external_weights(where="subgraph")),
    f"{EXTERNAL}, image model weights": ("onnx_image", hostile.external_weights),
    "safetensors: MLP of [20000, 0] weights (172 bytes)": ("mlp", hostile.mlp_zero_width),
    "safetensors: MLP whose layers do not chain (80 KB)": ("mlp", hostile.mlp_unchained),
    "safetensors: MLP of 3,000,000 features": ("mlp", hostile.mlp_wide_input),
    "safetensors: resnet18 head [1e6, 0]": ("resnet18", hostile.resnet_zero_head),
    "safetensors: 1M empty tensors (58 MB header)": ("mlp", hostile.many_empty_tensors),
    "safetensors: header is a JSON list": ("mlp", hostile.list_header),
    "safetensors: header nested 100,000 deep": ("mlp", hostile.nested_header),
    "onnx: ConstantOfShape 20000x20000": ("onnx_tabular", hostile.constant_of_shape),
    "onnx: Expand to 20000x20000": ("onnx_tabular", hostile.expand_to_huge),
    "onnx: image input 1x3x12000x12000": ("onnx_image", hostile.image_input),
    "onnx: tabular input 3,000,000 wide": ("onnx_tabular", hostile.wide_input),
    "onnx: 500 self-MatMuls of 1000x1000 (14 KB)": ("onnx_tabular", hostile.self_matmuls),
    "onnx: 300 MatMuls of a run-time 1500x1500 shape": ("onnx_tabular", hostile.slow_dynamic),
    "onnx: 1.6 GB from a run-time shape": ("onnx_tabular", hostile.dynamic_allocation),
    "onnx: Loop of 10^9 trips": ("onnx_tabular", hostile.slow_loop),
    "onnx: 200,000 nodes": ("onnx_tabular", hostile.many_nodes),
    "onnx: initializer declaring 10^9 elements, carrying 4 bytes":
        ("onnx_tabular", hostile.lying_tensor),
    "onnx: 200,000 class labels of 300 characters":
        ("onnx_tabular", hostile.many_class_labels),
    "onnx: 3 class labels of 300 characters": ("onnx_tabular", hostile.long_class_labels),
    "onnx: 100,000 feature names": ("onnx_tabular", hostile.many_feature_names),
    "onnx: repeated feature names": ("onnx_tabular", hostile.duplicate_feature_names),
    "onnx: output summed over the batch": ("onnx_tabular", hostile.batch_sum),
    "onnx: output mixed with the batch mean":
        ("onnx_tabular", lambda: hostile.batch_sum(keep_shape=True)),
    "class names file: 30,000 names": ("class_names", lambda: "\n".join(
        f"class {i}" for i in range(30_000)).encode()),
    "MLP config: class names of 300 characters":
        ("mlp_config", lambda: ('{"class_names": ["' + "y" * 300 + '"]}').encode()),
    "csv: a 1e308 cell (tabular rows)":
        ("tabular_rows", lambda: hostile.huge_cell_csv(["a", "b", "c"])),
    "server: six 40 MB PUTs next to a 1 MB box": ("puts", lambda: _put_data(False)),
    "server: six 40 MB PUTs to made-up file ids": ("puts", lambda: _put_data(True)),
    f"{EXTERNAL}, categorical pipeline, encoding part":
        ("onnx_pipeline", lambda: encoded.categorical_pipeline(front="external")),
    f"{EXTERNAL}, categorical pipeline, model part":
        ("onnx_pipeline", lambda: encoded.categorical_pipeline(rest="external")),
    "onnx pipeline: encoding part broadcasts two 20,000-value constants (1.6 GB)":
        ("onnx_pipeline", lambda: encoded.categorical_pipeline(front="broadcast")),
    "onnx pipeline: ConstantOfShape 20000x20000 after the encoding":
        ("onnx_pipeline", lambda: encoded.categorical_pipeline(rest="constant_of_shape")),
    "onnx pipeline: Tile to 20000x20000 after the encoding":
        ("onnx_pipeline", lambda: encoded.categorical_pipeline(rest="tile")),
    "onnx pipeline: a OneHotEncoder of 200,000 categories": ("onnx_pipeline",
                                                             encoded.many_categories),
    "embedding MLP: a 10^9-row table declared in a 200-byte file":
        ("embedding_mlp", encoded.embedding_table_declared),
    "embedding MLP: layers that do not chain (234 KB)":
        ("embedding_mlp", lambda: encoded.embedding_mlp(hidden=20_000, chained=False)),
    "embedding MLP: a category name of 300 characters": ("embedding_mlp", lambda: b"\1"),
    "text zip: vocab_size 10^9, word embeddings not in the weights":
        ("text_zip", encoded.text_vocab),
    "text zip: vocab_size 10^9": ("text_zip", lambda: encoded.text_vocab(keep_embeddings=True)),
    "text zip: 10,000 layers": ("text_zip", encoded.text_layers),
    "text zip: 128 layers of 65,536 (each within its limit, 1 GB not in the weights)":
        ("text_zip", lambda: encoded.text_zip({"num_hidden_layers": 128,
                                               "intermediate_size": 65_536})),
    "text zip: 200,000 id2label entries": ("text_zip", encoded.text_labels),
    "text zip: num_labels 10^9": ("text_zip", encoded.text_num_labels),
}


def outcome(kind: str, answer: Any, error: BaseException | None) -> dict[str, Any]:
    """The row's verdict fields: the answer in words, whether the server was exposed, whether
    the answer is the refusal this case needs, and the check's child's peak memory."""
    report = getattr(error, "sandbox_report", None)
    check_mb = round(report.peak_extra_bytes / 2**20) if report is not None else 0
    if error is not None:
        text = f"{type(error).__name__}: {error}"
        exposed = any(word in text for word in FILE_SYSTEM_WORDS)
        one_line = "\n" not in str(error) and type(error).__name__ in (
            "ModelLoadError", "TabularInputError")
        return {"answer": text[:160], "exposed": exposed, "refused": one_line,
                "check_peak_mb": check_mb}
    if kind == "puts":
        return {"answer": f"{answer['accepted']} of 6 accepted, {answer['held_mb']} MB held",
                "exposed": False, "refused": answer["accepted"] == 0, "check_peak_mb": 0}
    if kind == "tabular_rows":
        problems = [p.describe() for p in answer.problems]
        return {"answer": f"{len(problems)} cell problem(s): {'; '.join(problems)[:120]}",
                "exposed": False, "refused": bool(problems), "check_peak_mb": 0}
    names = [str(n) for n in getattr(answer, "class_names", ())]
    secret_bytes = [str(b) for b in SECRET]
    exposed = bool(names) and names[:5] == secret_bytes[:5]
    check_mb = round(getattr(answer, "metadata", {}).get("check_peak_bytes", 0) / 2**20)
    return {"answer": "accepted" + (f": class names {', '.join(names[:6])}…" if names else ""),
            "exposed": exposed, "refused": False, "check_peak_mb": check_mb}


def handled(row: dict[str, Any]) -> bool:
    return bool(row.get("refused")) and not row.get("exposed") and \
        row.get("seconds", 1e9) <= MAX_SECONDS and row.get("extra_peak_mb", 1e9) <= MAX_MB \
        and row.get("check_peak_mb", 0) <= MAX_MB
