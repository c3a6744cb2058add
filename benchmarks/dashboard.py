"""Time from pressing "Explain" to the rendered result, through AppTest (``python -m ...``).

Prints JSON. Cases: the digits CNN with IG at 300 steps (cold: empty result cache and a
freshly loaded model; cached: the same inputs again, in the same session and in a new one;
view-only: a colour-map change) and a ResNet-18 with random weights (registered as a temporary
spec through the safetensors-upload loader) with IG at 64 steps. Model loading happens when the
page opens, before the timer starts.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("IG_DASHBOARD_CACHE_DIR", "")  # memory only: cold means cold

import streamlit as st
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from attribution_core import describe_device, pick_device
from dashboard.widgets import catalog

APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
RESNET_NAME = "benchmark_resnet18_random"


def _png(side: int) -> bytes:
    ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    pixels = torch.stack([xs * 255 // side, ys * 255 // side, (xs + ys) * 127 // side], dim=2)
    buffer = io.BytesIO()
    Image.fromarray(pixels.to(torch.uint8).numpy(), "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def _page(model: str, image: bytes, steps: int, curve: bool) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=600)
    at.run()
    at.switch_page("../pages/image.py").run()
    at.selectbox(key="sidebar_model_image").set_value(model).run()
    at.radio(key="img_source").set_value("Upload").run()
    at.file_uploader(key="img_upload").set_value(("bench.png", image, "image/png")).run()
    at.slider(key="img_steps").set_value(steps).run()
    at.checkbox(key="img_curve").set_value(curve).run()
    if at.exception or at.error:
        raise RuntimeError(f"page setup failed: {at.exception} {[e.value for e in at.error]}")
    return at


def _click(at: AppTest, expect_cached: bool) -> float:
    started = time.perf_counter()
    at.button(key="img_explain").click().run()
    elapsed = time.perf_counter() - started
    if at.exception or at.error or not at.metric:
        raise RuntimeError(f"explain failed: {at.exception} {[e.value for e in at.error]}")
    run = at.session_state["img_runs"][at.session_state["img_current"]]
    if run.ig.from_cache != expect_cached and not expect_cached:
        raise RuntimeError("a cold run was served by the result cache: the timing is wrong")
    return elapsed


def _seconds(values: list[float]) -> dict[str, Any]:
    return {"median_s": round(statistics.median(values), 4),
            "runs_s": [round(v, 4) for v in values]}


def measure(model: str, image: bytes, steps: int, curve: bool, repeats: int) -> dict[str, Any]:
    cold: list[float] = []
    same_session: list[float] = []
    new_session: list[float] = []
    view_only: list[float] = []
    for _ in range(repeats):
        st.cache_resource.clear()  # no loaded model, no result cache
        at = _page(model, image, steps, curve)
        cold.append(_click(at, expect_cached=False))
        same_session.append(_click(at, expect_cached=True))
        other = _page(model, image, steps, curve)
        new_session.append(_click(other, expect_cached=True))  # the shared result cache
        started = time.perf_counter()
        other.selectbox(key="img_cmap").set_value("Viridis").run()
        view_only.append(time.perf_counter() - started)
    return {"model": model, "method": "IG", "n_steps": steps, "convergence_curve": curve,
            "cold": _seconds(cold), "cached_same_session": _seconds(same_session),
            "cached_new_session": _seconds(new_session),
            "view_option_change": _seconds(view_only)}


def register_random_resnet18() -> None:
    import torchvision
    from safetensors.torch import save

    from attribution_core.models.loaders import load_safetensors_upload

    torch.manual_seed(0)
    network = torchvision.models.resnet18(weights=None, num_classes=1000)
    data = save({k: v.contiguous() for k, v in network.state_dict().items()})
    loaded = load_safetensors_upload(data, "resnet18", 1000, name=RESNET_NAME)
    catalog.register_temporary(loaded.spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-resnet", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "device": describe_device(pick_device()), "torch": torch.__version__,
        "streamlit": st.__version__, "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
        "note": "seconds from clicking Explain to the end of the script run (AppTest)",
        "cases": [],
    }
    digits_image = _png(64)
    results["cases"].append(measure("digits_cnn", digits_image, 300, False, args.repeats))
    results["cases"].append(measure("digits_cnn", digits_image, 300, True, args.repeats))
    if not args.skip_resnet:
        register_random_resnet18()
        results["cases"].append(measure(RESNET_NAME, _png(256), 64, False, 1))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
