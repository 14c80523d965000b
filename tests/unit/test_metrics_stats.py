"""metrics/stats.py, the only statistics code: hand-checked vectors and straightforward loop references."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flamingo_eval.errors import UserError
from flamingo_eval.metrics import MetricInput, MetricResult, stats
from flamingo_eval.metrics.stats import (
    basic_bootstrap_pvalues,
    interval,
    paired_test,
    sign_flip_pvalue,
    trial_std,
    trial_summary,
    trials_ci,
)
from flamingo_eval.registry import METRICS


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolation percentile written out by hand."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


class PerSample:
    """Mean of the answers read as numbers: a per-sample metric with known scores."""

    name, corpus_level = "per_sample_test", False

    def __call__(self, items: list[MetricInput]) -> MetricResult:
        scores = [float(i.answer) for i in items]
        return MetricResult(sum(scores) / len(scores), tuple(scores))


class MedianLength:
    """A corpus metric that is not a mean: median answer length x10 (no per-sample scores)."""

    name, corpus_level = "median_length", True

    def __call__(self, items: list[MetricInput]) -> MetricResult:
        if not items:
            raise UserError("median_length: no items")
        return MetricResult(float(np.median([10 * len(i.answer) for i in items])), tuple(None for _ in items))


def items(pairs: list[tuple[str, str]]) -> list[MetricInput]:
    return [MetricInput(sid, answer, ()) for sid, answer in pairs]


def loop_ci(trials: list[dict[str, float]], ids: list[str], n_resamples: int, seed: int) -> tuple[float, float]:
    """The samples x trials bootstrap written as loops over the documented index stream (one chunk), the ids
    sorted (the draw never depends on the order of the lines)."""
    ids = sorted(ids)
    rows = np.random.default_rng(seed).integers(0, len(ids), size=(n_resamples, len(ids)))
    values = []
    for row in rows:
        per_trial = []
        for t in trials:
            drawn = [t[ids[j]] for j in row if ids[j] in t]
            per_trial.append(sum(drawn) / len(drawn) if drawn else math.nan)
        if not any(math.isnan(v) for v in per_trial):
            values.append(sum(per_trial) / len(per_trial))
    return percentile(values, 2.5), percentile(values, 97.5)


def test_trial_summary_hand_checked():
    s = trial_summary([79.1, 80.3, 78.6])
    # mean 238/3; squared deviations 0.054444, 0.934444, 0.537778 -> sum 1.526667
    assert s["mean"] == pytest.approx(79.333333, abs=1e-6)
    assert s["std"] == pytest.approx(math.sqrt(1.526667 / 3), abs=1e-6)  # 0.713364
    assert s["std_ddof1"] == pytest.approx(math.sqrt(1.526667 / 2), abs=1e-6)  # 0.873689
    assert trial_summary([50.0]) == {"mean": 50.0, "std": 0.0, "std_ddof1": None}  # issue-11 rule
    assert trial_summary([50.0, None]) == {"mean": None, "std": None, "std_ddof1": None}  # unscored trial
    with pytest.raises(UserError):
        trial_summary([])
    assert trial_std([1.0, 3.0], 0) == 1.0 and trial_std([1.0, 3.0], 1) == pytest.approx(math.sqrt(2))
    assert math.isnan(trial_std([1.0], 0))


def test_interval_and_basic_bootstrap_hand_checked():
    assert interval(np.arange(101.0), 0.90) == pytest.approx((5.0, 95.0))
    assert interval(np.arange(101.0)) == pytest.approx((2.5, 97.5))
    # boot - observed = [-1.5, -0.5, 0.5, 1.5]: one <= -1.5 -> (1 + 1) / 5; all four >= -1.5 -> 5 / 5
    assert basic_bootstrap_pvalues(np.array([-3.0, -2.0, -1.0, 0.0]), -1.5, 0.0) == pytest.approx((0.4, 1.0))


def test_sign_flip_exact_enumeration_hand_checked():
    # sign patterns of [-1, -2]: means -1.5, 0.5, -0.5, 1.5; observed -1.5 -> 1 of 4
    assert sign_flip_pvalue(np.array([-1.0, -2.0]), 10_000, 0) == pytest.approx(0.25)
    assert sign_flip_pvalue(np.array([-1.0, -1.0, -1.0]), 10_000, 0) == pytest.approx(1 / 8)


def test_paired_test_loop_reference():
    d = np.random.default_rng(42).normal(-2.0, 5.0, 60)
    delta, lo, hi, p_drop, _p_gain = paired_test(d, 1.0, 0.05, 1000, 0)
    rows = np.random.default_rng(0).integers(0, 60, size=(1000, 60))
    means = [float(np.mean(d[row])) for row in rows]
    assert delta == pytest.approx(float(d.mean()))
    assert (lo, hi) == pytest.approx((percentile(means, 5.0), percentile(means, 95.0)))
    assert 0.0 < p_drop < 1.0
    assert paired_test(np.zeros(20), 1.0, 0.05, 500, 0)[:3] == (0.0, 0.0, 0.0)


def test_trials_ci_two_samples_hand_checked():
    # scores 0 and 100: a draw of two has mean 0 (p 1/4), 50 (1/2) or 100 (1/4) -> 2.5%/97.5% are 0/100
    (lo, hi), used = trials_ci(PerSample(), [items([("a", "0"), ("b", "100")])], 1000)
    assert (lo, hi, used) == (0.0, 100.0, 1000)
    # constant scores: a degenerate interval
    assert trials_ci(PerSample(), [items([("a", "7"), ("b", "7")])], 200)[0] == pytest.approx((7.0, 7.0))


def test_trials_ci_resamples_samples_jointly_over_trials():
    # trial 0 scores a=100, b=0; trial 1 a=0, b=100: every draw gives trial means x and 100-x -> 50 exactly
    ci = trials_ci(PerSample(), [items([("a", "100"), ("b", "0")]), items([("a", "0"), ("b", "100")])], 500)
    assert ci is not None and ci[0] == pytest.approx((50.0, 50.0))


def test_trials_ci_matches_loop_reference_with_skipped_samples():
    rng = np.random.default_rng(1)
    ids = [f"s{i}" for i in range(40)]
    trials = [{sid: float(rng.integers(0, 2) * 100) for sid in ids}, {sid: float(rng.random() * 100) for sid in ids}]
    del trials[1]["s3"], trials[1]["s17"]  # trial 1 skipped two samples (too long with its demos)
    got = trials_ci(PerSample(), [items([(k, repr(v)) for k, v in t.items()]) for t in trials], 800, seed=5)
    assert got is not None and got[1] == 800
    assert got[0] == pytest.approx(loop_ci(trials, ids, 800, 5), abs=1e-9)


def test_trials_ci_corpus_metric_is_recomputed():
    ids = [str(i) for i in range(30)]
    answers = {sid: "x" * (int(sid) % 7) for sid in ids}
    (lo, hi), used = trials_ci(MedianLength(), [items(list(answers.items()))], 300, seed=3)
    ids = sorted(ids)
    rows = np.random.default_rng(3).integers(0, 30, size=(300, 30))
    medians = [float(np.median([10 * (int(ids[j]) % 7) for j in row])) for row in rows]
    assert used == 300 and (lo, hi) == pytest.approx((percentile(medians, 2.5), percentile(medians, 97.5)))


def test_trials_ci_vqa_metric_and_edge_cases():
    others = ["cat", "bird", "horse", "cow", "pig", "goat", "sheep", "fish", "frog", "ant"]
    counts = [4] * 55 + [3] * 5 + [2] * 5 + [1] * 5 + [0] * 30  # per-sample 100, 90, 60, 30, 0 -> mean 64
    vqa = [MetricInput(str(i), "dog", tuple(["dog"] * k + others[: 10 - k])) for i, k in enumerate(counts)]
    per_item = [100.0] * 55 + [90.0] * 5 + [60.0] * 5 + [30.0] * 5 + [0.0] * 30
    ci = trials_ci(METRICS.get("vqa_accuracy")(), [vqa], 1000, seed=0)
    assert ci is not None and ci[0] == pytest.approx(loop_ci([dict(zip(map(str, range(100)), per_item))],
                                                             [str(i) for i in range(100)], 1000, 0), abs=1e-9)
    assert ci[0][0] < 64.0 < ci[0][1]
    assert trials_ci(PerSample(), [items([("a", "1")])], 0) is None  # run.bootstrap: 0
    assert trials_ci(PerSample(), [[]], 100) is None  # every sample skipped


def test_resample_chunks_stream(monkeypatch: pytest.MonkeyPatch):
    one = np.concatenate(list(stats.resample_chunks(10, 25, 4)))
    monkeypatch.setattr(stats, "CHUNK", 30)  # 3 rows per chunk
    chunks = list(stats.resample_chunks(10, 25, 4))
    assert [c.shape for c in chunks][:2] == [(3, 10), (3, 10)] and sum(len(c) for c in chunks) == 25
    assert np.concatenate(list(stats.resample_chunks(10, 25, 4))).shape == one.shape
    with pytest.raises(UserError, match="no items"):
        next(stats.resample_chunks(0, 5, 0))
