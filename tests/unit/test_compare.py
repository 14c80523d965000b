"""The paired comparison / CI gate on synthetic runs with per-sample scores."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from flamingo_eval.commands import compare as cmd
from flamingo_eval.errors import UserError
from flamingo_eval.metrics.stats import sign_flip_pvalue
from flamingo_eval.results import compare_runs, format_comparison, paired_test, write_json_atomic

N = 300
SEEDS = (0, 1)
SHOTS = (0, 4)


def make_run(path: Path, scores: dict[tuple[int, int], np.ndarray], *, version: str = "1.0",
             split: str = "test", demo_salt: str = "", corpus: bool = False,
             metric: str = "cider_like") -> Path:
    """A run dir whose per-sample ``scores[(shots, seed)]`` are 0/100 arrays over samples s0..s{N-1}."""
    results: dict[int, dict] = {}
    lines: list[dict] = []
    for (shots, seed), arr in sorted(scores.items()):
        for i, sc in enumerate(arr):
            lines.append({"shots": shots, "trial": seed, "seed": seed, "sample_id": f"s{i}",
                          "demo_ids": [f"{demo_salt}d{seed}-{i}-{j}" for j in range(shots)],
                          "prompt_hash": "sha256:0", "raw_output": "x", "answer": "x" if sc else "y",
                          "score": None if corpus else float(sc), "references": ["x"], "label": None,
                          "scores": None, "extra": {}})
        res = results.setdefault(shots, {"shots": shots, "sampler": "random", "n": len(arr), "trials": []})
        res["trials"].append({"seed": seed, "value": float(np.mean(arr)), "n": len(arr), "ci95": None})
    for res in results.values():
        res["mean"] = float(np.mean([t["value"] for t in res["trials"]]))
    rec = {"schema_version": 1, "run_id": path.name, "created": "2026-11-24T18:20:00+00:00",
           "benchmark": {"id": "easyvqa", "version": version, "task": "vqa", "split": split,
                         "demo_split": "train", "metric": metric if corpus else "exact_match",
                         "metric_args": {}, "corpus_level": corpus},
           "model": {"id": path.name, "name": path.name, "fingerprint": "sha256:0"},
           "results": list(results.values())}
    write_json_atomic(path / "record.json", rec)
    (path / "predictions.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def base_scores(rng: np.random.Generator, p: float = 0.6) -> dict[tuple[int, int], np.ndarray]:
    return {(k, s): 100.0 * (rng.random(N) < p) for k in SHOTS for s in SEEDS}


def flip(scores: dict, rng: np.random.Generator, frac: float, p_correct: float = 0.5) -> dict:
    """Re-draw a fraction of samples (what a different seed / nondeterministic kernel does)."""
    out = {}
    for key, arr in scores.items():
        arr = arr.copy()
        idx = rng.random(len(arr)) < frac
        arr[idx] = 100.0 * (rng.random(int(idx.sum())) < p_correct)
        out[key] = arr
    return out


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cmd.add_parser(parser.add_subparsers())
    args = parser.parse_args(["compare", *argv])
    return args.func(args)


def test_real_drop_fails_the_gate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(1)
    base = base_scores(rng)
    # The candidate gets 30% of items re-drawn at 20% accuracy: a ~12-point drop.
    cand = flip(base, rng, frac=0.3, p_correct=0.2)
    b, c = make_run(tmp_path / "base", base), make_run(tmp_path / "cand", cand)
    assert _cli([str(b), str(c / "record.json"), "--n-resamples", "2000"]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION" in out and out.rstrip().splitlines()[-1].startswith("FAIL")
    cmp = compare_runs(b, c, n_resamples=2000)
    assert [cell.shots for cell in cmp.cells] == [0, 4] and cmp.failed
    for cell in cmp.cells:
        d = np.mean([cand[(cell.shots, s)] - base[(cell.shots, s)] for s in SEEDS])
        assert cell.delta == pytest.approx(d) and cell.ci_lo < cell.delta < cell.ci_hi < -1.0 and cell.p < 0.05


def test_same_model_seed_noise_passes(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    base = base_scores(rng)
    cand = flip(base, rng, frac=0.1, p_correct=0.6)  # same accuracy, 10% of answers re-drawn
    b, c = make_run(tmp_path / "base", base), make_run(tmp_path / "cand", cand)
    assert _cli([str(b), str(c), "--n-resamples", "2000", "--seed", "3"]) == 0
    assert _cli([str(b), str(b), "--n-resamples", "1000"]) == 0  # identical runs: delta 0, ok


def test_small_drop_within_tolerance_passes(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    base = base_scores(rng)
    cand = {k: v.copy() for k, v in base.items()}
    for v in cand.values():  # exactly 2 of 300 items lost: -0.67 points, below --max-drop 1.0
        v[np.flatnonzero(v == 100.0)[:2]] = 0.0
    cmp = compare_runs(make_run(tmp_path / "b", base), make_run(tmp_path / "c", cand), n_resamples=1000)
    assert not cmp.failed and {c.verdict for c in cmp.cells} == {"ok"}
    assert all(c.delta == pytest.approx(-200 / 300) for c in cmp.cells)


@pytest.mark.parametrize(("kwargs", "why"), [
    ({"version": "2.0"}, "benchmark version differs"),
    ({"split": "val"}, "benchmark split differs"),
    ({"demo_salt": "other-"}, "demo ids differ for easyvqa 0-shot seed 0 sample s0"),
])
def test_non_comparable_records_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], kwargs: dict,
                                        why: str) -> None:
    rng = np.random.default_rng(5)
    base = base_scores(rng)
    b, c = make_run(tmp_path / "base", base), make_run(tmp_path / "cand", base, **kwargs)
    # 0-shot has no demos, so demo ids can only differ from 4-shot on; compare 4-shot runs for that case.
    if "demo_salt" in kwargs:
        why = why.replace("0-shot", "4-shot")
    assert _cli([str(b), str(c)]) == 2
    err = capsys.readouterr().err
    assert why in err and err.count("\n") == 1 and err.startswith("error: records not comparable")


def test_unusable_paths_and_seeds_exit_2(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    b = make_run(tmp_path / "base", base_scores(rng))
    assert _cli([str(b), str(tmp_path / "nope")]) == 2
    other = {(k, 7): v for (k, _), v in base_scores(rng).items()}
    c = make_run(tmp_path / "cand", other)
    with pytest.raises(UserError, match="missing easyvqa 0-shot seed 0; easyvqa 0-shot seed 1; easyvqa 4-shot"):
        compare_runs(b, c)
    with pytest.raises(UserError, match="no common trial seeds"):  # partial coverage accepted, but none shared
        compare_runs(b, c, allow_partial=True)
    (b / "predictions.jsonl").unlink()
    with pytest.raises(UserError, match="predictions file not found"):
        compare_runs(b, b)


def test_corpus_metric_falls_back_to_per_trial(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    base = base_scores(rng)
    cand = flip(base, rng, frac=0.5, p_correct=0.1)
    cmp = compare_runs(make_run(tmp_path / "b", base, corpus=True), make_run(tmp_path / "c", cand, corpus=True),
                       n_resamples=1000)
    assert {c.method for c in cmp.cells} == {"per-trial (corpus metric)"}
    assert all(c.n == len(SEEDS) and c.verdict == "drop (n.s.)" for c in cmp.cells)  # 2 trials: p >= 1/4
    assert "cannot reach significance" in format_comparison(cmp)


class _CorpusAccuracy:
    """A stand-in corpus metric: accuracy of answer == first reference, no per-sample scores."""

    name, corpus_level = "test_corpus_accuracy", True

    def __call__(self, items: list) -> object:
        from flamingo_eval.metrics.base import MetricResult

        value = 100.0 * float(np.mean([it.answer == it.references[0] for it in items]))
        return MetricResult(value=value, per_sample=(None,) * len(items))


def test_registered_corpus_metric_is_recomputed_on_resamples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = pytest.importorskip("flamingo_eval.registry")
    # registered for this test only: tests that loop over every registered metric must not see it
    monkeypatch.setitem(registry.METRICS._items, _CorpusAccuracy.name, _CorpusAccuracy)
    rng = np.random.default_rng(8)
    base = base_scores(rng)
    cand = flip(base, rng, frac=0.3, p_correct=0.2)
    name = _CorpusAccuracy.name
    cmp = compare_runs(make_run(tmp_path / "b", base, corpus=True, metric=name),
                       make_run(tmp_path / "c", cand, corpus=True, metric=name), n_resamples=200)
    assert {c.method for c in cmp.cells} == {"corpus bootstrap"} and cmp.failed
    for cell in cmp.cells:
        d = np.mean([cand[(cell.shots, s)] - base[(cell.shots, s)] for s in SEEDS])
        assert cell.delta == pytest.approx(d) and cell.ci_hi < -1.0


def test_statistics_helpers() -> None:
    assert sign_flip_pvalue(np.array([-1.0, -1.0, -1.0]), 10_000, 0) == pytest.approx(1 / 8)
    assert sign_flip_pvalue(np.array([1.0, 1.0, 1.0]), 10_000, 0) == pytest.approx(1.0)
    delta, lo, hi, p, verdict = paired_test(np.zeros(50), 1.0, 0.05, 1000, 0)
    assert (delta, lo, hi, verdict) == (0.0, 0.0, 0.0, "ok") and p > 0.5
    d = np.full(200, -100.0)
    d[:100] = 0.0  # a 50-point drop
    assert paired_test(d, 1.0, 0.05, 2000, 0)[4] == "REGRESSION"
    # Deterministic for a fixed seed.
    x = np.random.default_rng(0).normal(-2, 10, 500)
    assert paired_test(x, 1.0, 0.05, 2000, 9) == paired_test(x, 1.0, 0.05, 2000, 9)


def _head(scores: dict, n: int) -> dict:
    """The same run evaluated with --limit n (the first n samples of each trial)."""
    return {k: v[:n].copy() for k, v in scores.items()}


@pytest.mark.parametrize("corpus", [False, True], ids=["per-sample", "corpus"])
def test_different_limits_show_the_paired_subset_values(corpus: bool, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A 120-sample candidate against a 300-sample baseline: every number shown is over the 120 paired samples."""
    registry = pytest.importorskip("flamingo_eval.registry")
    monkeypatch.setitem(registry.METRICS._items, _CorpusAccuracy.name, _CorpusAccuracy)
    rng = np.random.default_rng(9)
    base = base_scores(rng)
    cand = flip(_head(base, 120), rng, frac=0.2, p_correct=0.6)
    kw = {"corpus": True, "metric": _CorpusAccuracy.name} if corpus else {}
    cmp = compare_runs(make_run(tmp_path / "b", base, **kw), make_run(tmp_path / "c", cand, **kw), n_resamples=200,
                       allow_partial=True)  # deliberately: the candidate holds 120 of the baseline's 300 samples
    for cell in cmp.cells:
        b_sub = np.mean([base[(cell.shots, s)][:120] for s in SEEDS])
        c_sub = np.mean([cand[(cell.shots, s)] for s in SEEDS])
        assert cell.n == 120 and cell.baseline == pytest.approx(b_sub) and cell.candidate == pytest.approx(c_sub)
        assert cell.delta == pytest.approx(c_sub - b_sub)
        assert cell.baseline != pytest.approx(np.mean([base[(cell.shots, s)] for s in SEEDS]))  # not the 300
    notes = format_comparison(cmp)
    for shots in SHOTS:
        assert f"easyvqa {shots}-shot: paired on 120 samples per trial (baseline has 300, candidate 120)" in notes


def test_different_limits_per_trial_fallback_is_refused(tmp_path: Path) -> None:
    """An unregistered corpus metric cannot be recomputed on the paired subset: exit 2, not wrong values."""
    rng = np.random.default_rng(10)
    base = base_scores(rng)
    b = make_run(tmp_path / "b", base, corpus=True)
    c = make_run(tmp_path / "c", _head(base, 100), corpus=True)
    with pytest.raises(UserError, match="scored different samples .* cannot be recomputed on the 100 paired"):
        compare_runs(b, c, n_resamples=200, allow_partial=True)


def test_different_limits_on_the_committed_baseline(tmp_path: Path) -> None:
    """The baseline run against its own first 40 samples (a --limit 40 run): same answers, so equal values."""
    src = Path(__file__).resolve().parents[2] / "results" / "baselines" / "mini-easyvqa"
    rec = json.loads((src / "record.json").read_text())
    lines = [json.loads(ln) for ln in (src / "predictions.jsonl").read_text().splitlines()]
    lines = [ln for ln in lines if int(ln["sample_id"].removeprefix("test-")) < 40]
    for r in rec["results"]:
        for t in r["trials"]:
            key = (r["shots"], t["seed"])
            t["value"] = float(np.mean([ln["score"] for ln in lines if (ln["shots"], ln["seed"]) == key]))
    cand = tmp_path / "limit40"
    write_json_atomic(cand / "record.json", rec)
    (cand / "predictions.jsonl").write_text("".join(json.dumps(ln) + "\n" for ln in lines))
    cmp = compare_runs(src, cand, n_resamples=200, allow_partial=True)  # deliberately: 40 of the baseline's samples
    shown = {c.shots: (c.n, round(c.baseline, 2), round(c.candidate, 2), c.delta) for c in cmp.cells}
    first40 = {r["shots"]: round(float(np.mean([t["value"] for t in r["trials"]])), 2) for r in rec["results"]}
    assert shown == {k: (40, v, v, 0.0) for k, v in first40.items()}  # the paired 40, not the baseline's 200
    n = rec["config"]["run"]["limit"]  # the baseline's samples per trial
    assert f"paired on 40 samples per trial (baseline has {n}, candidate 40)" in format_comparison(cmp)
