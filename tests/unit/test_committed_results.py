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


def test_baseline_record_is_reproduced_by_rescoring_its_predictions():
    """The committed predictions re-scored with today's code give the record's numbers, ci95 included (the
    record was only extended with ci95 / ci95_resamples when they were added, and its ci95 redrawn over sorted
    ids with ci95_method added (issue 26): values bit for bit)."""
    from flamingo_eval.commands.list_cmd import load_card
    from flamingo_eval.results.rescore import score_file

    rec = load_record(BASELINE)
    out = score_file(load_card("easyvqa"), BASELINE)
    for mine, theirs in zip(out["results"], rec["results"], strict=True):
        assert [t["value"] for t in mine["trials"]] == [t["value"] for t in theirs["trials"]]
        for key in ("mean", "std", "std_ddof1", "ci95", "ci95_resamples", "ci95_method"):
            assert mine[key] == theirs[key], key
