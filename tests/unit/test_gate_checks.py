"""The gate's coverage check, per-group tests (Holm) and detectable drop, on synthetic runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from flamingo_eval.errors import UserError
from flamingo_eval.metrics.stats import detectable_drop, holm_adjust, paired_test
from flamingo_eval.results import compare_runs, format_comparison, write_json_atomic

N = 300
GROUPS = ("colour", "shape", "yes/no")


def make_run(path: Path, scores: dict[tuple[int, int], np.ndarray], groups: bool = True) -> Path:
    """A run whose card names ``gate.groups: answer_type``; sample i is in group GROUPS[i % 3]."""
    lines, results = [], {}
    for (shots, seed), arr in sorted(scores.items()):
        for i, sc in enumerate(arr):
            lines.append({"shots": shots, "trial": seed, "seed": seed, "sample_id": f"s{i}",
                          "demo_ids": [f"d{seed}-{i}-{j}" for j in range(shots)], "prompt_hash": "sha256:0",
                          "raw_output": "x", "answer": "x", "score": float(sc), "references": ["x"], "label": None,
                          "scores": None, "extra": {"answer_type": GROUPS[i % 3]} if groups else {}})
        res = results.setdefault(shots, {"shots": shots, "sampler": "random", "n": len(arr), "trials": []})
        res["trials"].append({"seed": seed, "value": float(np.mean(arr)), "n": len(arr), "ci95": None})
    for res in results.values():
        res["mean"] = float(np.mean([t["value"] for t in res["trials"]]))
    rec = {"schema_version": 1, "run_id": path.name, "created": "2026-12-08T03:00:00+00:00",
           "benchmark": {"id": "easyvqa", "version": "1.0", "task": "vqa", "split": "test", "demo_split": "train",
                         "metric": "exact_match", "metric_args": {}, "corpus_level": False},
           "model": {"id": path.name, "name": path.name, "fingerprint": "sha256:0"},
           "config": {"benchmarks": {"gate": {"groups": "answer_type" if groups else ""}}},
           "results": list(results.values())}
    write_json_atomic(path / "record.json", rec)
    (path / "predictions.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def baseline(seed: int = 0) -> dict[tuple[int, int], np.ndarray]:
    rng = np.random.default_rng(seed)
    return {(k, s): 100.0 * (rng.random(N) < 0.8) for k in (0, 4) for s in (0, 1)}


def test_holm_adjust_on_a_hand_checked_vector() -> None:
    # sorted 0.01, 0.03, 0.04 -> 3*0.01, max(0.03, 2*0.03), max(0.06, 1*0.04): returned in input order
    assert holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm_adjust([0.5, 0.001]) == pytest.approx([0.5, 0.002])
    assert holm_adjust([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # capped at 1, monotone


def _power(base: np.ndarray, drop: float, sims: int, rng: np.random.Generator) -> float:
    """Share of simulated candidates (each losing drop/mean of the samples outright) the gate fails."""
    hits = 0
    for r in range(sims):
        cand = base.copy()
        cand[:, rng.random(base.shape[1]) < drop / base.mean()] = 0.0
        delta, _, _, p_drop, _ = paired_test((cand - base).mean(0), 1.0, 0.05, 1000, r)
        hits += delta < -1.0 and p_drop < 0.05  # the gate's REGRESSION rule
    return hits / sims


def test_detectable_drop_has_about_80_percent_power() -> None:
    """The normal-approximation drop is detected in ~80% of simulated faults (a bit more: it is conservative)."""
    rng = np.random.default_rng(0)
    base = 100.0 * (rng.random((1, N)) < 0.85)
    drop = detectable_drop(base, 1.0, 0.05)
    assert 1.0 < drop < 10.0
    assert 0.72 <= _power(base, drop, 150, rng) <= 0.97
    assert _power(base, 0.6 * drop, 150, rng) <= 0.6


def test_detectable_drop_shrinks_with_n_and_grows_with_trial_disagreement() -> None:
    rng = np.random.default_rng(1)
    small, large = (100.0 * (rng.random((1, n)) < 0.85) for n in (100, 1000))
    assert detectable_drop(large, 1.0, 0.05) < detectable_drop(small, 1.0, 0.05)
    agree = np.repeat(large, 2, axis=0)
    noisy = agree.copy()
    noisy[1, :100] = 100.0 - noisy[1, :100]  # the second trial disagrees on 10% of the samples
    assert detectable_drop(agree, 1.0, 0.05) == detectable_drop(large, 1.0, 0.05)
    assert detectable_drop(noisy, 1.0, 0.05) > detectable_drop(agree, 1.0, 0.05)
    assert np.isnan(detectable_drop(np.zeros((1, 50)), 1.0, 0.05))  # nothing to lose: no drop is detectable


def _hidden_loss(scores: dict, lost: int) -> dict:
    """Per trial: ``lost`` right shape answers turned wrong, as many wrong colour answers turned right."""
    out = {}
    for key, arr in scores.items():
        arr = arr.copy()
        shape_right = [i for i in range(N) if i % 3 == 1 and arr[i] == 100.0][:lost]
        colour_wrong = [i for i in range(N) if i % 3 == 0 and arr[i] == 0.0][:lost]
        assert len(shape_right) == len(colour_wrong) == lost
        arr[shape_right], arr[colour_wrong] = 0.0, 100.0
        out[key] = arr
    return out


def test_a_loss_hidden_by_a_gain_fails_on_its_group(tmp_path: Path) -> None:
    base = baseline()
    b, c = make_run(tmp_path / "b", base), make_run(tmp_path / "c", _hidden_loss(base, 14))
    cmp = compare_runs(b, c, n_resamples=1000)
    assert all(cell.delta == 0 and cell.verdict == "ok" for cell in cmp.cells)  # overall: nothing moved
    bad = {(g.shots, g.group) for g in cmp.groups if g.verdict == "REGRESSION"}
    assert bad == {(0, "shape"), (4, "shape")} and cmp.failed
    shape = next(g for g in cmp.groups if g.group == "shape")
    assert shape.n == N // 3 and shape.delta == pytest.approx(-1400 / (N // 3))
    assert shape.p_holm == pytest.approx(min(1.0, 3 * shape.p))  # the smallest of 3 p-values: times 3
    report = format_comparison(cmp)
    assert "| easyvqa | 4 | shape" not in report and "| easyvqa | 4 | answer_type=shape |" in report
    assert report.rstrip().splitlines()[-1].startswith("FAIL") and "answer_type=shape" in report.splitlines()[-1]
    same = compare_runs(b, make_run(tmp_path / "same", base), n_resamples=200)  # no change: every group ok
    assert not same.failed and len(same.groups) == 2 * len(GROUPS)


def test_groups_skipped_with_a_note_when_the_baseline_lines_lack_the_field(tmp_path: Path) -> None:
    base = baseline()
    b = make_run(tmp_path / "b", base)
    lines = [json.loads(x) for x in (b / "predictions.jsonl").read_text().splitlines()]
    (b / "predictions.jsonl").write_text("".join(json.dumps({**x, "extra": {}}) + "\n" for x in lines))
    cmp = compare_runs(b, make_run(tmp_path / "c", base), n_resamples=200)
    assert not cmp.groups and "lack extra.answer_type" in format_comparison(cmp)


def _drop_cells(scores: dict, *, shots: int | None = None, seed: int | None = None, keep: int | None = None) -> dict:
    out = {k: v for k, v in scores.items() if k[0] != shots and k[1] != seed}
    return {k: v[:keep] for k, v in out.items()} if keep else out


@pytest.mark.parametrize(("edit", "missing"), [
    ({"shots": 0}, "missing easyvqa 0-shot;"),
    ({"seed": 1}, "missing easyvqa 0-shot seed 1; easyvqa 4-shot seed 1;"),
    ({"keep": 120}, "missing easyvqa 0-shot seed 0: 180 of 300 samples (e.g. s120); "),
], ids=["shot count", "seed", "samples"])
def test_coverage_gaps_exit_2_unless_partial_is_allowed(tmp_path: Path, edit: dict, missing: str) -> None:
    base = baseline()
    b, c = make_run(tmp_path / "b", base), make_run(tmp_path / "c", _drop_cells(base, **edit))
    with pytest.raises(UserError, match="candidate does not cover the baseline") as err:
        compare_runs(b, c, n_resamples=200)
    assert missing in str(err.value) and "--allow-partial" in str(err.value) and "\n" not in str(err.value)
    cmp = compare_runs(b, c, n_resamples=200, allow_partial=True)
    assert cmp.partial and not cmp.failed
    report = format_comparison(cmp)
    assert "PARTIAL COVERAGE" in report and report.rstrip().endswith("(PARTIAL COVERAGE: see above)")
    assert compare_runs(b, make_run(tmp_path / "full", base), n_resamples=200).partial == []


def test_cards_name_their_groups_and_the_lines_carry_them(vqav2_root: Path) -> None:
    """easy-VQA's answer type comes from the answer; VQAv2's from the annotation; both reach ``metric_fields``
    (the fields each prediction line carries in ``extra``)."""
    from flamingo_eval.config_load import compose_config
    from flamingo_eval.task import prepare

    task = prepare(compose_config("easyvqa", "tiny", ["run.limit=30", "run.shots=[0]"]))
    assert "answer_type" in task.metric_fields
    kinds = {s.references[0]: s.fields["answer_type"] for s in task.eval_samples}
    assert {kinds.get(a) for a in ("yes", "no")} <= {"yes/no", None} and kinds.get("circle", "shape") == "shape"
    assert set(kinds.values()) == {"yes/no", "shape", "colour"}
    assert all(v == "colour" for a, v in kinds.items() if a not in ("yes", "no", "circle", "rectangle", "triangle"))
    task = prepare(compose_config("vqav2", "tiny", [f"run.data_root={vqav2_root}", "run.shots=[0]"]))
    assert "answer_type" in task.metric_fields and {s.fields["answer_type"] for s in task.eval_samples} == {"other"}


def test_a_missing_benchmark_is_a_coverage_gap(tmp_path: Path) -> None:
    """A directory of baseline runs against a candidate directory lacking one benchmark's run."""
    base = baseline()
    make_run(tmp_path / "b" / "easyvqa", base)
    other = make_run(tmp_path / "b" / "other", base)
    rec = json.loads((other / "record.json").read_text())
    rec["benchmark"]["id"] = "other"
    write_json_atomic(other / "record.json", rec)
    make_run(tmp_path / "c" / "easyvqa", base)
    with pytest.raises(UserError, match="candidate does not cover the baseline: missing benchmark other;"):
        compare_runs(tmp_path / "b", tmp_path / "c", n_resamples=200)
    cmp = compare_runs(tmp_path / "b", tmp_path / "c", n_resamples=200, allow_partial=True)
    assert cmp.partial == ["benchmark other"] and {c.benchmark for c in cmp.cells} == {"easyvqa"}
