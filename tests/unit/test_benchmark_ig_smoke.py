"""The IG benchmark stays runnable and prints the figures the issue asks for (quick mode)."""

from __future__ import annotations

import pytest

from benchmarks.ig_vs_captum import main


@pytest.mark.slow
def test_quick_benchmark_reports_every_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    report = main(["--quick", "--models", "cnn"])
    assert report["speed"], "speed rows are reported"
    for row in report["speed"]:
        for key in ("ratio_vs_captum", "ratio_vs_limit"):
            assert row[key] > 0, f"{key} must be a measured positive ratio, got {row[key]}"
    (evals,) = report["evals_to_1pct"]
    assert evals["fixed_gausslegendre_steps_needed"], "fixed GL reached 1 % per feature"
    assert evals["auto_reached"] == all(e <= 0.01 for e in evals["auto_per_feature_error"]), \
        "auto's verdict is measured against the 1024-step reference, per feature"
    assert evals["seconds"]["captum_300"] > 0, "Captum at 300 steps is timed in the same run"
    assert '"ratio_vs_captum"' in capsys.readouterr().out, "JSON goes to stdout"
    oracle = report["auto_ig_oracle"]
    assert [row["tolerance"] for row in oracle["tolerances"]] == [0.05, 0.02, 0.01], \
        "the quick oracle covers the three loosest tolerances"
    for row in oracle["tolerances"]:
        assert row["runs"] >= 48 and set(row["nets"]) == {
            "relu_mlp", "tanh_mlp", "sigmoid_mlp", "relu_maxpool_cnn"}, row
        assert row["convergence_underreports"] == 0, \
            f"auto's reported convergence bounds the true error at {row['tolerance']}: {row}"
    assert max(oracle["cancelling"]["evaluations"]) < oracle["cancelling"]["budget"], \
        "cancelling attributions near f = 0 stop before the budget"


@pytest.mark.slow
def test_quick_fast_paths_benchmark_reports_its_ratios() -> None:
    from benchmarks.fast_paths import main as fast_paths

    (row,) = fast_paths(["--quick", "--models", "cnn"])["rows"]
    assert row["model"] == "cnn_8x8", "rows are named as the issue asks"
    for key in ("exact_ratio_vs_eager_limit", "preview_ratio_vs_exact", "eager_limit_seconds"):
        assert row[key] > 0, f"{key} is a measured positive number, got {row[key]}"
    assert 0 <= row["preview_relative_l2"] < 1 and row["preview_top10_overlap"] > 0, \
        f"the preview is close to the exact map but measured, not assumed: {row}"
