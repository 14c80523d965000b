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

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "results"
BASELINE = RESULTS / "baselines" / "mini-easyvqa"


def test_baseline_was_made_with_the_documented_subset_flags():
    rec = load_record(BASELINE)  # validates the schema
    run = rec["config"]["run"]
    assert rec["benchmark"]["id"] == "easyvqa" and rec["model"]["name"] == "mini"
    assert run["shots"] == [0, 4] and run["seeds"] == [0, 1] and run["limit"] == 500  # docs/ci.md
    assert run.get("subset", "first") == "first"
    assert (BASELINE / "predictions.jsonl").stat().st_size > 0


def test_baseline_passes_the_gate_against_itself():
    cmp = compare_runs(BASELINE, BASELINE, n_resamples=200)
    assert cmp.cells and all(c.verdict == "ok" and c.delta == 0 for c in cmp.cells)
    assert cmp.groups and all(g.verdict == "ok" and g.delta == 0 for g in cmp.groups)  # card gate.groups
    assert not cmp.partial


def test_docs_state_the_baseline_flags_and_its_detectable_drops():
    """docs/ci.md and the example workflow use the baseline's subset flags, and docs/ci.md's sensitivity table
    holds the detectable drops `compare` prints for the baseline (as a candidate of its own size sees them)."""
    run = load_record(BASELINE)["config"]["run"]
    docs, workflow = (ROOT / "docs" / "ci.md").read_text(), (ROOT / "docs" / "examples" / "eval-gate.yml").read_text()
    flags = f"--shots 0 4 --seeds 0 1 --limit {run['limit']}"
    assert flags in docs and flags in workflow
    cmp = compare_runs(BASELINE, BASELINE, n_resamples=200)
    assert cmp.detectable
    for (bench, shots), drop in cmp.detectable.items():
        assert f"| {BASELINE.name} | {bench} | {shots} | {run['limit']} | {drop:.1f} |" in docs


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
