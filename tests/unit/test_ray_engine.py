"""``explain --engine ray`` on a local Ray of 2 CPUs (loopback, no dashboard, no usage stats).

The Ray is the command's own (``start_ray``), and a test checks that its servers listen on
loopback only.

One Ray instance serves the module (starting one costs seconds). 200 digits cases with IG and
IG2 (16 steps each, to keep the module near a minute) are compared with the local engine; a run
stopped after three shards is resumed; a worker that dies on its first attempt at a shard is
restarted by Ray and the run completes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import ray  # requirements-scale.txt, included by requirements-test.txt: a missing Ray fails

from attribution_core.evaluation.cli import main
from attribution_core.evaluation.ray_engine import RaySetup, start_ray
from attribution_core.evaluation.report import read_report
from attribution_core.evaluation.sharded_run import (
    CRASH_FLAG_ENV,
    CRASH_SHARD_ENV,
    SLOW_SHARDS_ENV,
    STOP_AFTER_SHARDS_ENV,
)
from attribution_core.evaluation.types import EvaluationResult
from tests.ray_sockets import descendants, listening_addresses, not_loopback

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
N_CASES = 200
COMMON = ["--model", "digits_cnn", "--bundled", "--methods", "IG,IG2", "--ig-steps", "16",
          "--ig2-steps", "16", "--device", "cpu"]


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    # The command's own start: 2 CPUs, loopback only, no dashboard, no usage statistics.
    assert start_ray(RaySetup(workers=2)), "this module starts its own Ray"
    yield
    ray.shutdown()


def test_the_local_ray_listens_on_loopback_only(local_ray: None) -> None:
    ray.get(ray.remote(lambda: 1).remote())  # a worker process is up too
    processes = descendants(os.getpid())
    listening = listening_addresses(processes)
    assert len(listening) >= 4, f"Ray's servers must have been found: {listening}"
    assert not not_loopback(processes), \
        f"every Ray server must listen on loopback only: {not_loopback(processes)}"


@pytest.fixture(scope="module")
def local_result(tmp_path_factory: pytest.TempPathFactory) -> EvaluationResult:
    import torch

    out = tmp_path_factory.mktemp("local")
    threads = torch.get_num_threads()
    # One thread, as each Ray worker uses: on a loaded 2-core machine two intra-op threads
    # made this run ten times slower (benchmarks.scale); the numbers do not depend on it.
    torch.set_num_threads(1)
    try:
        assert main(["explain", *COMMON, "--n-cases", str(N_CASES), "--out", str(out)]) == 0, \
            "the local engine must succeed"
    finally:
        torch.set_num_threads(threads)
    return read_report(out / "evaluation.json")


def _summary(out: str) -> dict:
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, f"stdout must be one line of JSON: {lines!r}"
    return json.loads(lines[0])


def _assert_equal(local: EvaluationResult, other: EvaluationResult) -> None:
    by_id = {case.case_id: case for case in local.cases}
    assert other.cases and all(c.case_id in by_id for c in other.cases), \
        "every Ray case must be one of the local run's"
    for case in other.cases:
        reference = by_id[case.case_id]
        assert case.predicted == reference.predicted, f"{case.case_id}: prediction differs"
        for a, b in zip(reference.outcomes, case.outcomes, strict=True):
            scale = float(np.abs(a.scores).max()) or 1.0
            worst = float(np.abs(a.scores - b.scores).max()) / scale
            assert worst < 1e-5, f"{case.case_id}/{a.method}: maps differ by {worst:.2e}"
            assert b.deletion_auc == pytest.approx(a.deletion_auc, abs=1e-6) and \
                b.insertion_auc == pytest.approx(a.insertion_auc, abs=1e-6), \
                f"{case.case_id}/{a.method}: curves differ"
            assert b.delta == pytest.approx(a.delta, rel=1e-4, abs=1e-6), \
                f"{case.case_id}/{a.method}: completeness differs"


def test_ray_equals_local_and_resume_recomputes_only_missing_shards(
        local_ray: None, local_result: EvaluationResult, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["explain", *COMMON, "--n-cases", str(N_CASES), "--engine", "ray", "--workers", "2",
            "--shard-size", "20", "--out", str(tmp_path)]
    monkeypatch.setenv(STOP_AFTER_SHARDS_ENV, "3")
    assert main(args) == 130, "a stopped run exits 130 with a partial report"
    stopped = _summary(capsys.readouterr().out)
    shard_files = sorted((tmp_path / "shards").glob("shard-*.json"))
    finished = len(shard_files)
    assert stopped["cancelled"] and 3 <= finished < 10, \
        f"three shards (and the one still running) were written: {finished}"
    assert stopped["n_cases"] == 20 * finished, "the partial report holds the finished shards"
    stamps = {path.name: path.stat().st_mtime_ns for path in shard_files}

    monkeypatch.delenv(STOP_AFTER_SHARDS_ENV)
    assert main([*args, "--resume"]) == 0, "the resumed run must complete"
    captured = capsys.readouterr()
    resumed = _summary(captured.out)
    assert resumed["shards_reused"] == finished, f"reused: {resumed}"
    assert resumed["shards_computed"] == 10 - finished, \
        f"only the {10 - finished} missing shards may be computed: {resumed}"
    assert {p.name: p.stat().st_mtime_ns for p in shard_files} == stamps, \
        "finished shards must not be rewritten"
    assert "cases/s, ETA" in captured.err, f"progress with speed and ETA: {captured.err[-300:]}"
    merged = read_report(tmp_path / "evaluation.json")
    assert len(merged.cases) == N_CASES and not merged.cancelled, "all 200 cases merged"
    assert [c.case_id for c in merged.cases] == [c.case_id for c in local_result.cases], \
        "cases in the local engine's order"
    _assert_equal(local_result, merged)
    assert (tmp_path / "evaluation_attributions.safetensors").is_file() and \
        (tmp_path / "evaluation.html").is_file(), "the same three report files as local"
    from attribution_core.evaluation.case_table import read_column

    table = Path(resumed["cases_table"])
    assert table == tmp_path / "evaluation_cases.parquet" and \
        read_column(table, "case_id").tolist() == [c.case_id for c in merged.cases], \
        "the per-case table lists every case in order"
    assert np.array_equal(read_column(table, "IG2.deletion_auc"),
                          [c.outcome("IG2").deletion_auc for c in merged.cases]), \
        "the table's metrics are the report's"


def test_a_worker_that_dies_is_restarted_and_the_run_completes(
        local_ray: None, local_result: EvaluationResult, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    flag = tmp_path / "crashed"
    monkeypatch.setenv(CRASH_SHARD_ENV, "1")
    monkeypatch.setenv(CRASH_FLAG_ENV, str(flag))
    out = tmp_path / "out"
    status = main(["explain", *COMMON, "--n-cases", "60", "--engine", "ray", "--workers", "2",
                   "--shard-size", "20", "--out", str(out)])
    summary = _summary(capsys.readouterr().out)
    assert flag.is_file(), "the worker given shard 1 must have exited (the hook fired)"
    assert status == 0 and summary["n_cases"] == 60, f"the run must complete: {summary}"
    shard = json.loads((out / "shards" / "shard-00001.json").read_text())
    assert shard["meta"]["pid"] != int(flag.read_text()), \
        "shard 1 must come from a restarted worker process, not the one that died"
    _assert_equal(local_result, read_report(out / "evaluation.json"))


def test_a_shard_refused_by_its_worker_is_one_line_not_a_remote_traceback(
        local_ray: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("not_a_feature,other\n1,2\n3,4\n", encoding="utf-8")
    status = main(["explain", "--model", "wine_mlp", "--input", str(rows), "--engine", "ray",
                   "--workers", "1", "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert status == 2 and captured.out.strip() == "", "bad input: exit 2, no summary line"
    assert len(errors) == 1 and "lacks the feature column" in errors[0], \
        f"one line with the reader's reason: {errors}"
    assert "Traceback" not in captured.err, "no remote traceback on stderr"


def test_ctrl_c_stops_after_the_running_shards_and_resume_finishes(
        local_ray: None, local_result: EvaluationResult, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A real SIGINT to a real command (its own Ray), then --resume in this process."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    args = ["explain", *COMMON, "--n-cases", "60", "--engine", "ray", "--workers", "2",
            "--shard-size", "10", "--out", str(out)]
    # Shards after the first take 5 s: the whole run used to finish within the poll's 0.2 s
    # on a quiet machine, before the signal arrived (6 of 6 shards, not a partial report).
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0",
                   SLOW_SHARDS_ENV: "5"}
    process = subprocess.Popen([sys.executable, "-m", "attribution_core", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=environment, cwd=tmp_path)
    deadline = time.monotonic() + 240
    while not list((out / "shards").glob("shard-*.json")) and process.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=240)
    assert process.returncode == 130, f"Ctrl-C: exit 130 with a partial report: {stderr[-500:]}"
    assert "Stopping after the work already started" in stderr, "the stop is announced"
    partial = _summary(stdout)
    finished = len(list((out / "shards").glob("shard-*.json")))
    assert partial["cancelled"] and 1 <= finished < 6 and partial["n_cases"] == 10 * finished, \
        f"the finished shards make the partial report: {finished} shards, {partial}"

    assert main([*args, "--resume"]) == 0, "the resumed run must complete"
    resumed = _summary(capsys.readouterr().out)
    assert (resumed["shards_reused"], resumed["shards_computed"]) == (finished, 6 - finished), \
        f"only the missing shards are computed: {resumed}"
    _assert_equal(local_result, read_report(out / "evaluation.json"))
