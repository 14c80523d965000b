"""The committed results tree: the CI gate's baseline is valid and usable, and the leaderboard is current."""

from __future__ import annotations

from pathlib import Path

from flamingo_eval.results import (
    build_leaderboard,
    compare_runs,
    load_record,
    load_records,
    render_leaderboard,
)

RESULTS = Path(__file__).resolve().parents[2] / "results"
BASELINE = RESULTS / "baselines" / "mini-easyvqa"


def test_baseline_was_made_with_the_documented_subset_flags():
    rec = load_record(BASELINE)  # validates the schema
    run = rec["config"]["run"]
    assert rec["benchmark"]["id"] == "easyvqa" and rec["model"]["name"] == "mini"
    assert run["shots"] == [0, 4] and run["seeds"] == [0, 1] and run["limit"] == 200  # docs/ci.md
    assert run.get("subset", "first") == "first"
    assert (BASELINE / "predictions.jsonl").stat().st_size > 0


def test_baseline_passes_the_gate_against_itself():
    cmp = compare_runs(BASELINE, BASELINE, n_resamples=200)
    assert cmp.cells and all(c.verdict == "ok" and c.delta == 0 for c in cmp.cells)


def test_leaderboard_md_is_regenerated_from_the_committed_records():
    text = render_leaderboard(build_leaderboard(load_records(RESULTS)), "md")
    assert (RESULTS / "LEADERBOARD.md").read_text() == text, "stale results/LEADERBOARD.md: run `make leaderboard`"
