"""benchmarks.cache_identity replays the reviewer's stale-cache scenarios against the real cache
and finds none served stale, each scenario one where a stale answer would have differed."""

from __future__ import annotations

from benchmarks.cache_identity import main


def test_no_scenario_is_served_stale() -> None:
    report = main(["--quick"])
    rows = report["rows"]
    assert {row["case"] for row in rows} == {"1", "2", "3", "4", "9"}, "cases 1-4 and 9"
    for row in rows:
        assert row["stale_would_differ_by"] > 0, f"a stale answer would show: {row}"
        assert not row["served_stale"], f"served stale: {row}"
    assert report["served_stale"] == 0, report
    by_case = {row["case"]: row for row in rows}
    assert by_case["4"]["unbumped_change_caught_by_fingerprint"], \
        "the rule test catches a changed constant left under its old version"
    assert by_case["9"]["cache_writes_by_the_preview"] == 0, "a preview writes no cache entry"
