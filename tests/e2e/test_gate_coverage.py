"""The CI gate on the committed baseline: a candidate must cover it, and a loss on one group of questions fails.

Candidates are the committed baseline's own record and predictions with cells, seeds or samples taken away, or
with a test-only fault applied to its answers (no switch ships to users), so no model runs except in the
reproduction of the tiny-candidate report (``run --shots 4 --limit 24``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flamingo_eval.cli import main

BASELINE = Path(__file__).resolve().parents[2] / "results" / "baselines" / "mini-easyvqa"
SHAPES = ("circle", "rectangle", "triangle")


def _baseline() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    rec = json.loads((BASELINE / "record.json").read_text())
    return rec, [json.loads(ln) for ln in (BASELINE / "predictions.jsonl").read_text().splitlines()]


def _write(path: Path, rec: dict[str, Any], lines: list[dict[str, Any]]) -> Path:
    """A run directory holding ``lines``, its record's cells and trial values recomputed from them."""
    kept = {(ln["shots"], ln["seed"]) for ln in lines}
    results = []
    for r in rec["results"]:
        trials = [{**t, "value": float(np.mean([ln["score"] for ln in lines if (ln["shots"], ln["seed"]) ==
                                               (r["shots"], t["seed"])]))}
                  for t in r["trials"] if (r["shots"], t["seed"]) in kept]
        if trials:
            results.append({**r, "trials": trials, "mean": float(np.mean([t["value"] for t in trials]))})
    path.mkdir(parents=True)
    (path / "record.json").write_text(json.dumps({**rec, "results": results}))
    (path / "predictions.jsonl").write_text("".join(json.dumps(ln) + "\n" for ln in lines))
    return path


def _gate(capsys: pytest.CaptureFixture[str], candidate: Path, *flags: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["compare", str(BASELINE), str(candidate), "--n-resamples", "1000", *flags])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


@pytest.mark.parametrize(("keep", "missing"), [
    (lambda ln: ln["shots"] != 0, "missing easyvqa 0-shot;"),
    (lambda ln: ln["seed"] != 1, "missing easyvqa 0-shot seed 1; easyvqa 4-shot seed 1;"),
    (lambda ln: int(ln["sample_id"].removeprefix("test-")) < 120, "easyvqa 0-shot seed 0: {rest} of {n} samples "
                                                                  "(e.g. test-120)"),
], ids=["shot count", "seed", "samples"])
def test_a_candidate_missing_part_of_the_baseline_exits_2_unless_partial(keep, missing, tmp_path, capsys):
    rec, lines = _baseline()
    n = rec["config"]["run"]["limit"]
    cand = _write(tmp_path / "cand", rec, [ln for ln in lines if keep(ln)])
    code, out, err = _gate(capsys, cand)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith("error: candidate does not cover the baseline: ")
    assert missing.format(rest=n - 120, n=n) in err and "--allow-partial" in err
    code, out, err = _gate(capsys, cand, "--allow-partial")
    assert code == 0 and "PARTIAL COVERAGE (--allow-partial)" in out, out + err
    assert out.rstrip().splitlines()[-1] == "PASS: no significant regression (PARTIAL COVERAGE: see above)"


def test_the_tiny_candidate_of_the_report_exits_2(tmp_path, capsys):
    """The reported hole: a 24-question, 4-shot, one-seed candidate passed the gate; now it exits 2 with one line."""
    assert main(["run", "easyvqa", "--model", "mini", "--shots", "4", "--limit", "24", "--threads", "1",
                 "--output", str(tmp_path / "tiny")]) == 0
    code, _, err = _gate(capsys, tmp_path / "tiny")
    assert code == 2 and err.count("\n") == 1 and "missing easyvqa 0-shot;" in err and "4-shot seed 1" in err
    code, out, _ = _gate(capsys, tmp_path / "tiny", "--allow-partial")
    assert code == 0 and "| easyvqa | 4 | 24 |" in out and "PARTIAL COVERAGE" in out.splitlines()[-1]


SWAPPED = 15
"""Shape answers the fault swaps per trial (of the baseline's 76 shape questions: a ~20-point loss on shapes)."""


def _hide_a_shape_loss(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The test-only fault: per trial, SWAPPED right shape answers swapped to another shape, and as many wrong
    answers of the other types put right -- a loss on one answer type hidden by a gain on the others."""
    out = [dict(ln) for ln in lines]
    for key in sorted({(ln["shots"], ln["seed"]) for ln in out}):
        trial = [ln for ln in out if (ln["shots"], ln["seed"]) == key]
        right_shape = [ln for ln in trial if ln["extra"]["answer_type"] == "shape" and ln["score"] == 100.0]
        wrong_other = [ln for ln in trial if ln["extra"]["answer_type"] != "shape" and ln["score"] == 0.0]
        assert min(len(right_shape), len(wrong_other)) >= SWAPPED
        for ln in right_shape[:SWAPPED]:
            ln.update(answer=SHAPES[(SHAPES.index(ln["references"][0]) + 1) % 3], score=0.0)
        for ln in wrong_other[:SWAPPED]:
            ln.update(answer=ln["references"][0], score=100.0)
    return out


def test_a_shape_loss_hidden_by_a_gain_elsewhere_fails_on_the_committed_baseline(tmp_path, capsys):
    rec, lines = _baseline()
    assert all("answer_type" in ln["extra"] for ln in lines), "baseline predates gate.groups: regenerate it"
    code, out, err = _gate(capsys, _write(tmp_path / "cand", rec, _hide_a_shape_loss(lines)))
    assert code == 1, out + err
    rows = [ln.split("|") for ln in out.splitlines() if ln.startswith("| easyvqa |")]
    overall = [r for r in rows if r[3].strip().isdigit()]
    assert overall and all(abs(float(r[6])) < 1.0 and r[10].strip() == "ok" for r in overall)  # under the margin
    groups = {(int(r[2]), r[3].strip()): r[-2].strip() for r in rows if "=" in r[3]}
    assert {k for k, v in groups.items() if v == "REGRESSION"} == {(0, "answer_type=shape"), (4, "answer_type=shape")}
    assert out.rstrip().splitlines()[-1] == ("FAIL: significant regression on easyvqa 0-shot answer_type=shape, "
                                             "easyvqa 4-shot answer_type=shape")
    print(*(ln for ln in out.splitlines() if "answer_type=shape" in ln and ln.startswith("| easyvqa")), sep="\n")
